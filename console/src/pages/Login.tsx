import {useEffect, useState, type FormEvent} from 'react';

// What /auth/config says: whether the server signs people in through an OIDC provider.
interface AuthConfig {
  oidc: {issuer: string; login: string} | null;
}

export function Login({onLogin, reason, fetchFn}: {onLogin: (token: string) => void; reason: string | null;
                                                  fetchFn?: typeof fetch}) {
  const [token, setToken] = useState('');
  const [sso, setSso] = useState<AuthConfig['oidc']>(null);
  useEffect(() => {
    let live = true;
    (fetchFn ?? fetch)('/auth/config')
      .then((r) => (r.ok ? (r.json() as Promise<AuthConfig>) : null))
      .then((c) => { if (live && c?.oidc) setSso(c.oidc); })
      .catch(() => {});  // no single sign-on offered: the token form stays
    return () => { live = false; };
  }, [fetchFn]);
  const back = location.pathname === '/login' ? '/' : location.pathname;
  const submit = (e: FormEvent) => {
    e.preventDefault();
    const t = token.trim();
    if (t) onLogin(t);
  };
  return (
    <main id="main" className="login">
      <h1>Gantry</h1>
      {sso && (
        <p>
          <a className="button" href={`${sso.login}?return=${encodeURIComponent(back)}`}>
            Sign in with single sign-on
          </a>{' '}
          <span className="muted">({sso.issuer})</span>
        </p>
      )}
      <form onSubmit={submit} aria-describedby="login-help">
        <label htmlFor="token">API token</label>
        <input id="token" name="token" type="password" autoComplete="off" autoFocus required
               value={token} onChange={(e) => setToken(e.target.value)} />
        <button type="submit">Sign in</button>
      </form>
      {reason && <p className="error" role="alert">{reason}</p>}
      <p id="login-help" className="muted">
        Paste an API token (<code>gantry token create</code>, or the bootstrap admin token that
        <code> gantry server</code> printed on its first start). It is kept in this tab only.
      </p>
    </main>
  );
}
