// The left sidebar's "Export requests": the user's requests and what reviewers said.

import { PageConfig } from '@jupyterlab/coreutils';
import { LabIcon } from '@jupyterlab/ui-components';
import { Widget } from '@lumino/widgets';

import { listRequests } from './api';

export const PANEL_ID = 'datahavn-airlock-panel';

/** Refresh this often while the panel is visible. */
const REFRESH_MS = 30000;

export const STATE_LABELS = {
  requested: 'Requested',
  under_review: 'Under review',
  approved: 'Approved',
  released: 'Released \u2014 download from the airlock page', // an em dash
  rejected: 'Rejected',
  returned: 'Returned for changes',
  withdrawn: 'Withdrawn'
};

// A tray with an arrow leaving it (drawn here: no external assets).
export const airlockIcon = new LabIcon({
  name: 'datahavn:airlock',
  svgstr:
    '<svg xmlns="http://www.w3.org/2000/svg" width="16" viewBox="0 0 24 24">' +
    '<g class="jp-icon3" fill="#616161">' +
    '<path d="M11 15V6.83L8.41 9.41 7 8l5-5 5 5-1.41 1.41L13 6.83V15z"/>' +
    '<path d="M4 13h2v5h12v-5h2v7H4z"/>' +
    '</g></svg>'
});

/**
 * The airlock's own page, a JupyterHub service: `services/datahavn-airlock/` next to the hub's prefix
 * (`/hub/` gives `/services/datahavn-airlock/`, `/x/hub/` gives `/x/services/datahavn-airlock/`).
 */
export function airlockPageUrl(hubPrefix = PageConfig.getOption('hubPrefix')) {
  const prefix = hubPrefix || '/hub/';
  const parts = prefix.split('/').filter(Boolean);
  parts.pop();
  const parent = parts.length ? `/${parts.join('/')}/` : '/';
  return `${parent}services/datahavn-airlock/`;
}

function element(tag, className, text) {
  const node = document.createElement(tag);
  if (className) {
    node.className = className;
  }
  if (text !== undefined && text !== null) {
    node.textContent = String(text);
  }
  return node;
}

function formatTime(iso) {
  const date = new Date(iso);
  return iso && !isNaN(date.getTime()) ? date.toLocaleString() : String(iso || '');
}

function formatSize(size) {
  if (typeof size !== 'number' || !isFinite(size)) {
    return '';
  }
  const units = ['bytes', 'KB', 'MB', 'GB'];
  let value = size;
  let unit = 0;
  while (value >= 1000 && unit < units.length - 1) {
    value /= 1000;
    unit += 1;
  }
  return unit ? `${value.toFixed(1)} ${units[unit]}` : `${value} ${units[0]}`;
}

function timeNode(iso, className) {
  const node = element('time', className, formatTime(iso));
  if (iso) {
    node.dateTime = String(iso);
  }
  return node;
}

/** One request: its id, state, files, justification and the reviewers' comments. */
export function renderRequest(request) {
  const state = String(request.state || '');
  const item = element('li', 'dh-airlock-request');
  item.dataset.id = String(request.id || '');
  item.dataset.state = state;

  const head = element('div', 'dh-airlock-request-head');
  head.appendChild(element('span', 'dh-airlock-request-id', request.id));
  head.appendChild(element('span', `dh-airlock-state dh-airlock-state-${state}`, STATE_LABELS[state] || state));
  item.appendChild(head);
  if (request.created) {
    item.appendChild(timeNode(request.created, 'dh-airlock-created'));
  }

  const files = element('ul', 'dh-airlock-request-files');
  for (const file of Array.isArray(request.files) ? request.files : []) {
    const path = typeof file === 'string' ? file : String((file && file.path) || '');
    const name = path.split('/').pop() || path;
    const entry = element('li', 'dh-airlock-request-file', name);
    const details = [path, formatSize(file && file.size), file && file.sha256 ? `sha256 ${file.sha256}` : ''];
    entry.title = details.filter(Boolean).join('\n');
    entry.dataset.path = path;
    files.appendChild(entry);
  }
  item.appendChild(files);

  if (request.justification) {
    item.appendChild(element('p', 'dh-airlock-request-justification', request.justification));
  }

  const comments = (Array.isArray(request.comments) ? request.comments : []).filter(c => c && c.comment);
  if (comments.length) {
    const list = element('ul', 'dh-airlock-comments');
    for (const comment of comments) {
      const entry = element('li', 'dh-airlock-comment');
      const meta = element('div', 'dh-airlock-comment-meta');
      meta.appendChild(element('span', 'dh-airlock-comment-actor', comment.actor || 'reviewer'));
      if (comment.action) {
        meta.appendChild(element('span', 'dh-airlock-comment-action', comment.action));
      }
      if (comment.time) {
        meta.appendChild(timeNode(comment.time, 'dh-airlock-comment-time'));
      }
      entry.appendChild(meta);
      entry.appendChild(element('div', 'dh-airlock-comment-text', comment.comment));
      list.appendChild(entry);
    }
    item.appendChild(list);
  }
  return item;
}

/** Newest first; requests without a creation time keep the server's order, after the others. */
function newestFirst(requests) {
  const time = r => {
    const t = new Date(r && r.created).getTime();
    return isNaN(t) ? -Infinity : t;
  };
  return requests.map((r, i) => [r, i]).sort((a, b) => time(b[0]) - time(a[0]) || a[1] - b[1]).map(p => p[0]);
}

export class AirlockPanel extends Widget {
  constructor({ serverSettings }) {
    super();
    this._settings = serverSettings;
    this._timer = null;
    this._inFlight = null;
    this._again = false;
    this.id = PANEL_ID;
    this.addClass('dh-airlock-panel');
    this.title.icon = airlockIcon;
    this.title.caption = 'Export requests';

    const header = element('div', 'dh-airlock-panel-header');
    header.appendChild(element('h2', 'dh-airlock-panel-title', 'Export requests'));
    const refresh = element('button', 'jp-mod-styled dh-airlock-refresh', 'Refresh');
    refresh.type = 'button';
    refresh.title = 'Refresh the list of export requests';
    refresh.addEventListener('click', () => void this.refresh());
    header.appendChild(refresh);
    this.node.appendChild(header);

    const link = element('a', 'dh-airlock-page-link', 'Open the airlock page');
    link.href = airlockPageUrl();
    link.target = '_blank';
    link.rel = 'noopener';
    this.node.appendChild(link);

    this._status = element('p', 'dh-airlock-status');
    this._status.setAttribute('aria-live', 'polite');
    this.node.appendChild(this._status);
    this._list = element('ul', 'dh-airlock-requests');
    this.node.appendChild(this._list);
  }

  /** Fetch and show the requests again; calls made during a fetch are merged into one more. */
  refresh() {
    if (this._inFlight) {
      this._again = true;
      return this._inFlight;
    }
    this._inFlight = this._load().finally(() => {
      this._inFlight = null;
      if (this._again) {
        this._again = false;
        void this.refresh();
      }
    });
    return this._inFlight;
  }

  async _load() {
    this.node.classList.add('dh-mod-loading');
    try {
      const requests = await listRequests(this._settings);
      if (this.isDisposed) {
        return;
      }
      this._list.replaceChildren(...newestFirst(requests).map(renderRequest));
      this._status.textContent = requests.length
        ? ''
        : 'No export requests yet. Right-click a file in the file browser and choose \u201cRequest export\u2026\u201d.';
      this.node.dataset.loaded = 'true';
      delete this.node.dataset.error;
    } catch (error) {
      if (this.isDisposed) {
        return;
      }
      this._status.textContent = `Could not load the export requests: ${error.message || error}`;
      this.node.dataset.error = 'true';
    } finally {
      this.node.classList.remove('dh-mod-loading');
    }
  }

  onAfterAttach(msg) {
    super.onAfterAttach(msg);
    if (this.isVisible) {
      this._start();
    }
  }

  onBeforeDetach(msg) {
    this._stop();
    super.onBeforeDetach(msg);
  }

  onAfterShow(msg) {
    super.onAfterShow(msg);
    this._start();
  }

  onAfterHide(msg) {
    this._stop();
    super.onAfterHide(msg);
  }

  dispose() {
    this._stop();
    super.dispose();
  }

  _start() {
    void this.refresh();
    if (this._timer === null) {
      this._timer = window.setInterval(() => {
        if (this.isVisible && !document.hidden) {
          void this.refresh();
        }
      }, REFRESH_MS);
    }
  }

  _stop() {
    if (this._timer !== null) {
      window.clearInterval(this._timer);
      this._timer = null;
    }
  }
}
