// Where the researcher is: the window title and a top-bar label read "<project> — Datahavn", and the Help
// menu's "Datahavn: what is protected and how to export" says what the workspace blocks and what to do instead.

import { MainAreaWidget } from '@jupyterlab/apputils';
import { PageConfig } from '@jupyterlab/coreutils';
import { IMainMenu } from '@jupyterlab/mainmenu';
import { Widget } from '@lumino/widgets';

export const HELP_COMMAND = 'datahavn:help';
export const HELP_ID = 'datahavn-help';

/** The project of this server: the last part of its URL, /user/<user>/<project>/. */
export const projectName = () => {
  const parts = PageConfig.getBaseUrl().split('/').filter(Boolean);
  return decodeURIComponent(parts[parts.length - 1] || '');
};

const HELP = [
  ['What stays in the workspace',
    'The project\u2019s data and everything made from it. Files do not open in the browser as raw text or ' +
    'downloads, nothing is exported by the menus (download, export, print), and notebooks open only within ' +
    'the workspace\u2019s output budget. Kernels reach no network: only this project\u2019s folders and, ' +
    'where configured, its Dask cluster.'],
  ['How to read a data file',
    'In a notebook: pd.read_csv(\'shared/phenotypes.csv\'), or project.genotypes(\'cohort\') ' +
    'for a dataset (project.datasets() lists them).'],
  ['How a result leaves',
    'Right-click it in the file browser and choose \u201cRequest export\u2026\u201d. Two output checkers review ' +
    'it; once released, you download it from the airlock page (Hub home \u2192 the airlock).'],
  ['Everything is recorded',
    'Every cell you run, and every refusal, is in the project\u2019s audit trail.']
];

const helpWidget = () => {
  const body = new Widget();
  body.addClass('dh-help');
  body.id = HELP_ID;
  const h = document.createElement('h1');
  h.textContent = `Datahavn: what is protected in ${projectName()} and how to export`;
  body.node.appendChild(h);
  for (const [title, text] of HELP) {
    const h2 = document.createElement('h2');
    h2.textContent = title;
    const p = document.createElement('p');
    p.textContent = text;
    body.node.append(h2, p);
  }
  const widget = new MainAreaWidget({ content: body });
  widget.id = `${HELP_ID}-panel`;
  widget.title.label = 'Datahavn help';
  widget.title.closable = true;
  return widget;
};

export const workspacePlugin = {
  id: '@datahavn/airlock:workspace',
  description: 'The project in the title and the top bar; Datahavn help.',
  autoStart: true,
  requires: [],
  optional: [IMainMenu],
  activate: (app, mainMenu) => {
    const name = `${projectName()} \u2014 Datahavn`;
    // JupyterLab sets the title as documents change: put ours back each time
    const keep = () => {
      if (document.title !== name) {
        document.title = name;
      }
    };
    keep();
    new MutationObserver(keep).observe(document.querySelector('title') || document.head, {
      childList: true, characterData: true, subtree: true
    });
    const label = new Widget();
    label.id = 'dh-project-label';
    label.addClass('dh-project-label');
    label.node.textContent = name;
    app.shell.add(label, 'top', { rank: 1000 });

    let help = null;
    app.commands.addCommand(HELP_COMMAND, {
      label: 'Datahavn: what is protected and how to export',
      execute: () => {
        if (!help || help.isDisposed) {
          help = helpWidget();
        }
        if (!help.isAttached) {
          app.shell.add(help, 'main');
        }
        app.shell.activateById(help.id);
      }
    });
    if (mainMenu) {
      mainMenu.helpMenu.addGroup([{ command: HELP_COMMAND }], 0);
    }
  }
};
