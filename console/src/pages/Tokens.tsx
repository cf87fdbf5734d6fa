// API tokens: the caller's own, or every token for an admin (the server says which by answering
// ?all=1 or 403). Creating one shows its secret once; revoking asks first and takes effect at the
// next request made with it. Secrets are never listed: the server does not keep them.

import {useState, type FormEvent} from 'react';

import {ApiError, type Client} from '../api/client';
import type {ApiToken} from '../api/contract';
import {ErrorBox, time, useLoad} from '../components/common';

export function Tokens({client}: {client: Client}) {
  // An admin sees every token; anyone else (403 on ?all=1) their own.
  const list = useLoad(() => client.tokens(true).catch((e: Error) => {
    if (e instanceof ApiError && e.status === 403) return client.tokens(false).then((l) => ({...l, own: true}));
    throw e;
  }), [client]);
  const [name, setName] = useState('');
  const [project, setProject] = useState('');
  const [role, setRole] = useState('viewer');
  const [created, setCreated] = useState<ApiToken | null>(null);
  const [error, setError] = useState<Error | null>(null);
  const [revoking, setRevoking] = useState<ApiToken | null>(null);
  const own = list.data !== null && 'own' in list.data;

  const create = (e: FormEvent) => {
    e.preventDefault();
    setError(null);
    client.createToken(project ? {name, project, roles: [role as 'viewer' | 'deployer' | 'admin']} : {name}).then((t) => {
      setCreated(t);
      setName('');
      list.reload();
    }, setError);
  };
  const revoke = (t: ApiToken) => {
    setRevoking(null);
    client.revokeToken(t.id).then(() => list.reload(), setError);
  };
  return (
    <section aria-labelledby="tokens-title">
      <h1 id="tokens-title">API tokens</h1>
      <p className="muted">{own ? 'Your tokens.' : 'Every token (you manage tokens everywhere).'}</p>
      {list.error && <ErrorBox error={list.error} />}
      {error && <ErrorBox error={error} />}
      {created && (
        <div role="status" className="confirm">
          <p>Token {created.id} “{created.name}” created. Copy its secret now: it is not shown again.</p>
          <p><code className="mono" aria-label="New token secret">{created.token}</code></p>
          <button type="button" onClick={() => setCreated(null)}>Done</button>
        </div>
      )}
      <form onSubmit={create} aria-label="Create a token" className="token-form">
        <label>Name <input required maxLength={100} value={name} onChange={(e) => setName(e.target.value)} /></label>{' '}
        <label>Robot token of project <input value={project} placeholder="(empty: your own)" onChange={(e) => setProject(e.target.value)} /></label>{' '}
        {project && (
          <label>Role{' '}
            <select value={role} onChange={(e) => setRole(e.target.value)}>
              <option>viewer</option><option>deployer</option><option>admin</option>
            </select>
          </label>
        )}{' '}
        <button type="submit">Create token</button>
      </form>
      {revoking && (
        <div role="alertdialog" aria-labelledby="revoke-text" className="confirm">
          <p id="revoke-text">Revoke {revoking.id} “{revoking.name}” of {revoking.owner}? Requests with it fail from now on.</p>
          <button type="button" autoFocus onClick={() => revoke(revoking)}>Revoke</button>{' '}
          <button type="button" onClick={() => setRevoking(null)}>Keep it</button>
        </div>
      )}
      {list.data && (
        <div className="table-wrap">
          <table>
            <thead>
              <tr><th scope="col">Id</th><th scope="col">Name</th><th scope="col">Kind</th><th scope="col">Owner</th><th scope="col">Roles</th>
                <th scope="col">Created</th><th scope="col">Last used</th><th scope="col">Expires</th><th scope="col">State</th><th scope="col"><span className="sr-only">Actions</span></th></tr>
            </thead>
            <tbody>
              {list.data.items.map((t) => (
                <tr key={t.id}>
                  <td className="mono">{t.id}</td><td>{t.name}</td><td>{t.kind}</td><td>{t.owner}</td><td>{t.roles.join(', ') || '—'}</td>
                  <td>{time(t.created_at)} by {t.created_by}</td><td>{time(t.last_used_at)}</td><td>{time(t.expires_at)}</td>
                  <td>{t.revoked_at ? `revoked ${time(t.revoked_at)} by ${t.revoked_by}` : 'active'}</td>
                  <td>{!t.revoked_at && <button type="button" onClick={() => setRevoking(t)} aria-label={`Revoke ${t.id} ${t.name}`}>Revoke</button>}</td>
                </tr>
              ))}
            </tbody>
          </table>
        </div>
      )}
    </section>
  );
}
