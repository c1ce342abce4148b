// Where the bearer token lives (sessionStorage: this tab only, never a URL) and how it is obtained:
// a development token for a user name, a pasted token, or OpenID Connect (authorization code + PKCE).
import type * as OAuth from "oauth4webapi";
import { api, type SignInOptions } from "./api";

const TOKEN = "taskflow.token";
const PENDING = "taskflow.oidc";

export function storedToken(): string | null {
  return sessionStorage.getItem(TOKEN);
}
export function storeToken(token: string): void {
  sessionStorage.setItem(TOKEN, token.trim());
}
export function forgetToken(): void {
  sessionStorage.removeItem(TOKEN);
}

/** The ``sub`` claim, for display and per-user preferences only (the server verifies the token). */
export function tokenUser(token: string | null): string | null {
  const payload = token?.split(".")[1];
  if (!payload) return null;
  try {
    const json = atob(payload.replace(/-/g, "+").replace(/_/g, "/"));
    const sub = (JSON.parse(json) as { sub?: unknown }).sub;
    return typeof sub === "string" ? sub : null;
  } catch {
    return null;
  }
}

export async function devSignIn(user: string): Promise<void> {
  storeToken(await api.devToken(user));
}

type Oidc = NonNullable<SignInOptions["oidc"]>;

// Loaded only when the server offers OpenID Connect, so other sign-ins do not download it.
const lib = (): Promise<typeof OAuth> => import("oauth4webapi");

async function server(oidc: Oidc): Promise<OAuth.AuthorizationServer> {
  const oauth = await lib();
  const issuer = new URL(oidc.issuer);
  const insecure = issuer.protocol === "http:" && ["localhost", "127.0.0.1", "[::1]"].includes(issuer.hostname);
  const resp = await oauth.discoveryRequest(issuer, { algorithm: "oidc", [oauth.allowInsecureRequests]: insecure });
  return oauth.processDiscoveryResponse(issuer, resp);
}

const redirectUri = (): string => `${location.origin}/`;

/** Leave for the identity provider; the code verifier and state wait in sessionStorage. */
export async function oidcStart(oidc: Oidc): Promise<void> {
  const oauth = await lib();
  const as = await server(oidc);
  if (!as.authorization_endpoint) throw new Error("the issuer has no authorization endpoint");
  const verifier = oauth.generateRandomCodeVerifier();
  const state = oauth.generateRandomState();
  const url = new URL(as.authorization_endpoint);
  url.searchParams.set("client_id", oidc.client_id);
  url.searchParams.set("redirect_uri", redirectUri());
  url.searchParams.set("response_type", "code");
  url.searchParams.set("scope", oidc.scope);
  url.searchParams.set("code_challenge", await oauth.calculatePKCECodeChallenge(verifier));
  url.searchParams.set("code_challenge_method", "S256");
  url.searchParams.set("state", state);
  sessionStorage.setItem(PENDING, JSON.stringify({ verifier, state, back: location.search }));
  location.assign(url.href);
}

/** On return from the identity provider: trade the code for a token and clean the URL. */
export async function oidcFinish(oidc: Oidc): Promise<boolean> {
  const raw = sessionStorage.getItem(PENDING);
  const here = new URL(location.href);
  if (!raw || !here.searchParams.has("state")) return false;
  sessionStorage.removeItem(PENDING);
  const pending = JSON.parse(raw) as { verifier: string; state: string; back: string };
  history.replaceState(null, "", `/${pending.back}`);
  const oauth = await lib();
  const as = await server(oidc);
  const client: OAuth.Client = { client_id: oidc.client_id };
  const params = oauth.validateAuthResponse(as, client, here, pending.state);
  const insecure = new URL(oidc.issuer).protocol === "http:";
  const resp = await oauth.authorizationCodeGrantRequest(as, client, oauth.None(), params, redirectUri(), pending.verifier, {
    [oauth.allowInsecureRequests]: insecure,
  });
  const result = await oauth.processAuthorizationCodeResponse(as, client, resp);
  storeToken(result.access_token);
  return true;
}
