/**
 * Where the offline Netron viewer lives, and which viewer addresses an output may point at.
 *
 * The viewer is served by the workbench's Jupyter server extension under
 * `<base_url>workbench/viewer/` (see workbench/jupyter/viewer_routes.py): `file.html?path=P`
 * opens a file of the Jupyter contents, `index.html?model=TOKEN` a model a kernel registered.
 * A kernel without the server extension serves the same pages on a loopback port
 * (`http://127.0.0.1:PORT/viewer/`). Output data comes from notebooks that may not be the user's
 * own, so an output's address is accepted only when it is one of those two forms.
 */
import { PageConfig, URLExt } from '@jupyterlab/coreutils';

export const VIEWER_ROUTE = 'workbench/viewer/';

/** Every answer of the viewer routes carries this header; a plain Jupyter 404 does not. */
export const VIEWER_HEADER = 'X-Workbench-Viewer';

/** The viewer root of this Jupyter server, e.g. `http://host/user/x/workbench/viewer/`. */
export function viewerRoot(): string {
  return URLExt.join(PageConfig.getBaseUrl(), VIEWER_ROUTE);
}

/** The viewer page that opens the contents file at `path` (a path relative to the server root). */
export function fileViewerUrl(path: string, version: string): string {
  return (
    URLExt.join(viewerRoot(), 'file.html') +
    URLExt.objectToQueryString({ path, v: version })
  );
}

const LOOPBACK_HOSTS = new Set(['127.0.0.1', 'localhost']);

/**
 * The absolute viewer URL an output asks for, or null when it is not a workbench viewer page:
 * same-origin under this server's viewer route, or the kernel's loopback server.
 */
export function checkedOutputUrl(url: string): URL | null {
  let parsed: URL;
  try {
    parsed = new URL(url, PageConfig.getBaseUrl());
  } catch {
    return null;
  }
  const root = new URL(viewerRoot());
  const sameServer =
    parsed.origin === root.origin && parsed.pathname === `${root.pathname}index.html`;
  const loopback =
    parsed.protocol === 'http:' &&
    LOOPBACK_HOSTS.has(parsed.hostname) &&
    parsed.port !== '' &&
    parsed.pathname === '/viewer/index.html';
  return sameServer || loopback ? parsed : null;
}
