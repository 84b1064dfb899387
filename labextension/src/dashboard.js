// "Dask dashboard" (View menu, palette): the plots of this workspace's own Dask cluster in a lab tab,
// served by the workspace's server at datahavn/dask/ (extensions/dask_dashboard.py), never by the cluster.

import { ICommandPalette, IFrame, MainAreaWidget } from '@jupyterlab/apputils';
import { URLExt } from '@jupyterlab/coreutils';
import { IMainMenu } from '@jupyterlab/mainmenu';

export const DASHBOARD_COMMAND = 'datahavn:dask-dashboard';
export const DASHBOARD_ID = 'datahavn-dask-dashboard';

export const dashboardPlugin = {
  id: '@datahavn/airlock:dask-dashboard',
  description: "The Dask dashboard of this workspace's own clusters, in a lab tab.",
  autoStart: true,
  requires: [],
  optional: [ICommandPalette, IMainMenu],
  activate: (app, palette, mainMenu) => {
    const settings = app.serviceManager.serverSettings;
    let widget = null;
    app.commands.addCommand(DASHBOARD_COMMAND, {
      label: 'Dask dashboard',
      caption: "Progress of this workspace's Dask cluster (its plots; no data values)",
      execute: () => {
        if (!widget || widget.isDisposed) {
          // same origin: the dashboard's scripts run, and reach only this server's datahavn/dask/ pages
          const frame = new IFrame({ sandbox: ['allow-scripts', 'allow-same-origin'] });
          frame.url = URLExt.join(settings.baseUrl, 'datahavn/dask/');
          widget = new MainAreaWidget({ content: frame });
          widget.id = DASHBOARD_ID;
          widget.title.label = 'Dask dashboard';
          widget.title.closable = true;
        }
        if (!widget.isAttached) {
          app.shell.add(widget, 'main');
        }
        app.shell.activateById(widget.id);
      }
    });
    if (palette) {
      palette.addItem({ command: DASHBOARD_COMMAND, category: 'Datahavn' });
    }
    if (mainMenu) {
      mainMenu.viewMenu.addGroup([{ command: DASHBOARD_COMMAND }], 100);
    }
  }
};
