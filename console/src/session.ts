// The API token of this browser tab: kept in sessionStorage (gone when the tab closes; never in
// localStorage, never in a cookie) and sent as "Authorization: Bearer".

const kKey = 'gantry.token';

export function loadToken(): string | null {
  return sessionStorage.getItem(kKey);
}
export function saveToken(token: string): void {
  sessionStorage.setItem(kKey, token);
}
export function clearToken(): void {
  sessionStorage.removeItem(kKey);
}

// The end of a single sign-on: the server's /auth/callback sends the browser to
// /login#id_token=TOKEN&return=PATH. Keeps the token, takes the fragment out of the address bar and
// history, and returns where to go; null when this page load is not such a redirect.
export function takeSignInRedirect(): string | null {
  if (location.pathname !== '/login' || !location.hash.startsWith('#')) return null;
  const params = new URLSearchParams(location.hash.slice(1));
  const token = params.get('id_token');
  if (!token) return null;
  saveToken(token);
  const ret = params.get('return') ?? '/';
  const to = ret.startsWith('/') && !ret.startsWith('//') ? ret : '/';
  history.replaceState(null, '', to);
  return to;
}

// Light or dark: the system's (prefers-color-scheme) until the user picks one, which is remembered.
export type Theme = 'light' | 'dark';
const kThemeKey = 'gantry.theme';

export function initialTheme(): Theme {
  const saved = localStorage.getItem(kThemeKey);
  if (saved === 'light' || saved === 'dark') return saved;
  return window.matchMedia?.('(prefers-color-scheme: dark)').matches ? 'dark' : 'light';
}
export function applyTheme(theme: Theme, remember: boolean): void {
  document.documentElement.dataset.theme = theme;
  if (remember) localStorage.setItem(kThemeKey, theme);
}
