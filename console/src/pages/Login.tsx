import {useState, type FormEvent} from 'react';

export function Login({onLogin, reason}: {onLogin: (token: string) => void; reason: string | null}) {
  const [token, setToken] = useState('');
  const submit = (e: FormEvent) => {
    e.preventDefault();
    const t = token.trim();
    if (t) onLogin(t);
  };
  return (
    <main id="main" className="login">
      <h1>Gantry</h1>
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
