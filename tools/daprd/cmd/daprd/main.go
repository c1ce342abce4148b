// Command daprd is Dapr's sidecar exactly as github.com/dapr/dapr/cmd/daprd builds it (the same
// app.Run entry point, built with -tags stablecomponents), plus one component the stable set leaves
// out: secretstores.aws.secretmanager, so the local stack and a cluster built here can read their
// secrets from AWS Secrets Manager (moto's Secrets Manager in the tests). Registering it here costs a
// few packages; an allcomponents build would compile every component Dapr has.
package main

import (
	"github.com/dapr/components-contrib/secretstores/aws/secretmanager"
	"github.com/dapr/dapr/cmd/daprd/app"
	secretstoresLoader "github.com/dapr/dapr/pkg/components/secretstores"
)

func init() {
	// the same registration as dapr's cmd/daprd/components/secretstores_aws_secretmanager.go, which
	// is compiled only with -tags allcomponents
	secretstoresLoader.DefaultRegistry.RegisterComponent(secretmanager.NewSecretManager, "aws.secretmanager")
}

func main() {
	app.Run()
}
