// Sign-in: a user name (development secret only), OpenID Connect, or a pasted token.
import { useEffect, useRef, useState } from "preact/hooks";
import { api, ApiError, type Problem, type SignInOptions } from "./api";
import { devSignIn, oidcStart, storeToken } from "./auth";
import { ProblemView } from "./problem";

export function SignIn({ options, notice, onSignedIn }: { options: SignInOptions | null; notice: string | null; onSignedIn: () => void }) {
  const [user, setUser] = useState("");
  const [token, setToken] = useState("");
  const [problem, setProblem] = useState<Problem | null>(null);
  const [busy, setBusy] = useState(false);
  const heading = useRef<HTMLHeadingElement>(null);
  useEffect(() => {
    heading.current?.focus();
    performance.mark("taskflow:interactive"); // the form takes input from here on (bench/web_bench.py)
  }, []);

  const run = async (action: () => Promise<void>) => {
    setBusy(true);
    setProblem(null);
    try {
      await action();
    } catch (err) {
      setProblem(err instanceof ApiError ? err.problem : { title: "Sign-in failed", status: 0, detail: String(err) });
    } finally {
      setBusy(false);
    }
  };

  return (
    <main class="signin" id="main">
      <h1 tabIndex={-1} ref={heading}>
        TaskFlow
      </h1>
      <p class="lede">Tasks with due dates, reminders and repeats.</p>
      {notice && <p class="notice" role="status">{notice}</p>}
      <ProblemView problem={problem} />
      {options?.dev_token && (
        <form
          class="card"
          onSubmit={(e) => {
            e.preventDefault();
            void run(async () => {
              await devSignIn(user);
              onSignedIn();
            });
          }}
        >
          <h2>Development sign-in</h2>
          <div class="field">
            <label for="si-user">User name</label>
            <input id="si-user" autocomplete="username" value={user} required onInput={(e) => setUser(e.currentTarget.value)} />
          </div>
          <button class="primary" type="submit" disabled={busy}>
            Sign in
          </button>
        </form>
      )}
      {options?.oidc && (
        <div class="card">
          <h2>Your organisation</h2>
          <button class="primary" type="button" disabled={busy} onClick={() => void run(() => oidcStart(options.oidc!))}>
            Continue with single sign-on
          </button>
        </div>
      )}
      <form
        class="card"
        onSubmit={(e) => {
          e.preventDefault();
          void run(async () => {
            storeToken(token);
            await api.settings(); // checks the token
            onSignedIn();
          });
        }}
      >
        <h2>Paste a token</h2>
        <div class="field">
          <label for="si-token">Bearer token</label>
          <textarea id="si-token" rows={3} value={token} required spellcheck={false} onInput={(e) => setToken(e.currentTarget.value)} />
        </div>
        <p class="hint">
          A JWT this server accepts, e.g. from <code>taskflow token NAME</code>. It is kept in this tab only.
        </p>
        <button type="submit" disabled={busy}>
          Use token
        </button>
      </form>
    </main>
  );
}
