// The airlock's REST API on the workspace's own server: the only two calls this extension makes.
//
//   GET  <baseUrl>datahavn/api/airlock/requests  -> {"requests": [...]}
//   POST <baseUrl>datahavn/api/airlock/requests  {"files", "justification", "output_type"} -> {"id"}
//
// Errors are JSON {"message": "..."} with a 4xx/5xx status. Requests go through
// ServerConnection.makeRequest, which adds the server's token and the XSRF header.

import { URLExt } from '@jupyterlab/coreutils';
import { ServerConnection } from '@jupyterlab/services';

export const REQUESTS_PATH = 'datahavn/api/airlock/requests';

/** What the researcher may say the output is. */
export const OUTPUT_TYPES = ['figure', 'table', 'text', 'notebook', 'other'];

/** A refusal or failure, with the server's message as it was sent. */
export class AirlockError extends Error {
  constructor(message, status) {
    super(message);
    this.name = 'AirlockError';
    this.status = status;
  }
}

async function call(settings, init) {
  const url = URLExt.join(settings.baseUrl, REQUESTS_PATH);
  // 'no-cache' (revalidate), not JupyterLab's default 'no-store', which appends a cache-busting
  // query to the URL: the airlock's URL stays exactly the one above.
  const options = { cache: 'no-cache', ...init };
  let response;
  try {
    response = await ServerConnection.makeRequest(url, options, settings);
  } catch (error) {
    const reason = error && error.message ? error.message : String(error);
    throw new AirlockError(`The server could not be reached: ${reason}`, 0);
  }
  const text = await response.text();
  let body = null;
  if (text) {
    try {
      body = JSON.parse(text);
    } catch (error) {
      body = null;
    }
  }
  if (!response.ok) {
    const message =
      body && typeof body.message === 'string' && body.message
        ? body.message
        : `${response.status} ${response.statusText}`.trim();
    throw new AirlockError(message, response.status);
  }
  return body;
}

/** The user's requests in this workspace, as the server lists them. */
export async function listRequests(settings) {
  const body = await call(settings, { method: 'GET' });
  return body && Array.isArray(body.requests) ? body.requests : [];
}

/** Ask for `files` (paths relative to the server root) to be reviewed for export; the new request's id. */
export async function createRequest(settings, { files, justification, outputType }) {
  const body = await call(settings, {
    method: 'POST',
    headers: { 'Content-Type': 'application/json' },
    body: JSON.stringify({ files, justification, output_type: outputType })
  });
  const id = body && (typeof body.id === 'string' || typeof body.id === 'number') ? String(body.id) : '';
  if (!id) {
    throw new AirlockError('The server accepted the request but sent no id', 0);
  }
  return id;
}
