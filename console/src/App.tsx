import {useCallback, useEffect, useMemo, useState} from 'react';

import {Client} from './api/client';
import {Application} from './pages/Application';
import {Clusters} from './pages/Clusters';
import {Environments} from './pages/Environments';
import {Login} from './pages/Login';
import {Overview} from './pages/Overview';
import {ReleaseFlow} from './pages/ReleaseFlow';
import {Pipelines} from './pages/Pipelines';
import {Projects} from './pages/Projects';
import {Releases} from './pages/Releases';
import {RunDetail} from './pages/RunDetail';
import {Runs} from './pages/Runs';
import {Tokens} from './pages/Tokens';
import {Link, navigate, usePath} from './router';
import {applyTheme, clearToken, initialTheme, loadToken, saveToken, takeSignInRedirect, type Theme} from './session';

function Page({client, path}: {client: Client; path: string}) {
  let m: RegExpMatchArray | null;
  if (path === '/' || path === '') return <Overview client={client} />;
  if (path === '/runs' || path === '/runs/') return <Runs client={client} />;
  if (path === '/clusters' || path === '/clusters/') return <Clusters client={client} />;
  if (path === '/environments' || path === '/environments/') return <Environments client={client} />;
  if (path === '/pipelines' || path === '/pipelines/') return <Pipelines client={client} />;
  if (path === '/projects' || path === '/projects/') return <Projects client={client} />;
  if (path === '/tokens' || path === '/tokens/') return <Tokens client={client} />;
  if ((m = path.match(/^\/runs\/(\d+)\/?$/))) return <RunDetail key={m[1]} client={client} id={Number(m[1])} />;
  if ((m = path.match(/^\/apps\/([^/]+)\/?$/))) {
    const app = decodeURIComponent(m[1]);
    return <Application key={app} client={client} app={app} />;
  }
  if ((m = path.match(/^\/apps\/([^/]+)\/releases\/(\d+)\/?$/))) {
    const app = decodeURIComponent(m[1]);
    return <ReleaseFlow key={`${app}/${m[2]}`} client={client} app={app} id={Number(m[2])} />;
  }
  if ((m = path.match(/^\/apps\/([^/]+)\/releases\/?$/))) {
    const app = decodeURIComponent(m[1]);
    return <Releases key={app} client={client} app={app} />;
  }
  return (
    <section>
      <h1>Not found</h1>
      <p>The console has no page {path}. <Link href="/">Go to the overview</Link>.</p>
    </section>
  );
}

export function App({fetchFn}: {fetchFn?: typeof fetch}) {
  // Before the first render: a sign-on redirect's token is kept and the address becomes its page.
  const [token, setToken] = useState<string | null>(() => {
    takeSignInRedirect();
    return loadToken();
  });
  const path = usePath();
  const [reason, setReason] = useState<string | null>(null);
  const [theme, setTheme] = useState<Theme>(initialTheme);
  useEffect(() => applyTheme(theme, false), [theme]);

  const logout = useCallback((why: string | null) => {
    clearToken();
    setToken(null);
    setReason(why);
  }, []);
  const client = useMemo(
    () => (token ? new Client({token, fetch: fetchFn, onUnauthenticated: () => logout('The server refused the token (401 Unauthorized): sign in again.')}) : null),
    [token, fetchFn, logout]);

  if (!client) {
    return <Login reason={reason} fetchFn={fetchFn} onLogin={(t) => { saveToken(t); setReason(null); setToken(t); }} />;
  }
  const toggle = () => {
    const t = theme === 'dark' ? 'light' : 'dark';
    applyTheme(t, true);
    setTheme(t);
  };
  const nav = (href: string, label: string, active: boolean) => (
    <Link href={href} aria-current={active ? 'page' : undefined}>{label}</Link>
  );
  return (
    <>
      <a className="skip" href="#main">Skip to content</a>
      <header className="top">
        <span className="brand">Gantry</span>
        <nav aria-label="Main">
          {nav('/', 'Overview', path === '/' || path.startsWith('/apps/'))}
          {nav('/runs', 'CI runs', path.startsWith('/runs'))}
          {nav('/environments', 'Environments', path.startsWith('/environments'))}
          {nav('/clusters', 'Clusters', path.startsWith('/clusters'))}
          {nav('/pipelines', 'Pipelines', path.startsWith('/pipelines'))}
          {nav('/projects', 'Projects', path.startsWith('/projects'))}
          {nav('/tokens', 'Tokens', path.startsWith('/tokens'))}
        </nav>
        <div className="top-right">
          <button type="button" onClick={toggle} aria-label={`Switch to ${theme === 'dark' ? 'light' : 'dark'} theme`}>
            {theme === 'dark' ? 'Light' : 'Dark'} theme
          </button>
          <button type="button" onClick={() => { logout(null); navigate('/'); }}>Sign out</button>
        </div>
      </header>
      <main id="main" tabIndex={-1}>
        <Page client={client} path={path} />
      </main>
    </>
  );
}
