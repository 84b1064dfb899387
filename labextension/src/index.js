// Datahavn's airlock in JupyterLab: "Request export…" (file browser, palette, File menu) and the
// "Export requests" panel in the left sidebar. The server side is the workspace's airlock API (api.js).
// Also "Dask dashboard" (dashboard.js), and the project in the title with Datahavn's help (workspace.js).

import { ILayoutRestorer } from '@jupyterlab/application';
import { ICommandPalette, Notification, showErrorMessage } from '@jupyterlab/apputils';
import { IDocumentManager } from '@jupyterlab/docmanager';
import { IDefaultFileBrowser, IFileBrowserFactory } from '@jupyterlab/filebrowser';
import { IMainMenu } from '@jupyterlab/mainmenu';

import { AirlockError, createRequest } from './api';
import { dashboardPlugin } from './dashboard';
import { workspacePlugin } from './workspace';
import { askForExport } from './dialog';
import { AirlockPanel, PANEL_ID } from './panel';

export const CommandIDs = {
  requestExport: 'datahavn:request-export',
  showRequests: 'datahavn:show-export-requests'
};

const CATEGORY = 'Datahavn';
const FILE_ITEM_SELECTOR = '.jp-DirListing-item[data-isdir="false"]';

const plugin = {
  id: '@datahavn/airlock:plugin',
  description: 'Request the export of results through the Datahavn airlock, and follow the requests.',
  autoStart: true,
  requires: [],
  optional: [IFileBrowserFactory, IDefaultFileBrowser, IDocumentManager, ICommandPalette, IMainMenu, ILayoutRestorer],
  activate: (app, browsers, defaultBrowser, docManager, palette, mainMenu, restorer) => {
    const { commands, serviceManager } = app;
    const settings = serviceManager.serverSettings;

    /** A path as the server sees it: relative to its root, without a drive's prefix. */
    const serverPath = path => serviceManager.contents.localPath(path).replace(/^\/+/, '');

    const selectedFiles = () => {
      const browser = (browsers && browsers.tracker.currentWidget) || defaultBrowser;
      if (!browser) {
        return [];
      }
      return Array.from(browser.selectedItems())
        .filter(item => item.type !== 'directory')
        .map(item => serverPath(item.path));
    };

    const currentDocument = () => {
      const widget = app.shell.currentWidget;
      const context = widget && docManager ? docManager.contextForWidget(widget) : undefined;
      return context ? [serverPath(context.path)] : [];
    };

    /** The file browser's selection from its context menu; else the current document, else the selection. */
    const filesFor = args => {
      if (Array.isArray(args.paths)) {
        return args.paths.map(p => serverPath(String(p)));
      }
      if (args.source === 'filebrowser') {
        return selectedFiles();
      }
      const current = currentDocument();
      return current.length ? current : selectedFiles();
    };

    const panel = new AirlockPanel({ serverSettings: settings });
    app.shell.add(panel, 'left', { rank: 650 });
    if (restorer) {
      restorer.add(panel, PANEL_ID);
    }

    commands.addCommand(CommandIDs.requestExport, {
      label: 'Request export\u2026',
      caption: 'Ask for files to be reviewed, so that they can be downloaded from the airlock page',
      execute: async (args = {}) => {
        const files = [...new Set(filesFor(args).filter(Boolean))];
        if (!files.length) {
          await showErrorMessage(
            'Nothing to export',
            'Select one or more files in the file browser, or open a document, then choose \u201cRequest export\u2026\u201d.'
          );
          return;
        }
        const request = await askForExport(files);
        if (!request) {
          return;
        }
        let id;
        try {
          id = await createRequest(settings, request);
        } catch (error) {
          await showErrorMessage(
            'Export request refused',
            error instanceof AirlockError ? error.message : String((error && error.message) || error)
          );
          return;
        }
        Notification.success(`Export request ${id} sent for review`, { autoClose: 8000 });
        void panel.refresh();
      }
    });

    commands.addCommand(CommandIDs.showRequests, {
      label: 'Show export requests',
      caption: 'Show your export requests and what the reviewers said',
      execute: () => {
        app.shell.activateById(PANEL_ID);
        return panel.refresh();
      }
    });

    app.contextMenu.addItem({
      command: CommandIDs.requestExport,
      args: { source: 'filebrowser' },
      selector: FILE_ITEM_SELECTOR,
      rank: 10
    });
    if (palette) {
      palette.addItem({ command: CommandIDs.requestExport, category: CATEGORY });
      palette.addItem({ command: CommandIDs.showRequests, category: CATEGORY });
    }
    if (mainMenu) {
      mainMenu.fileMenu.addGroup([{ command: CommandIDs.requestExport }], 90);
    }
  }
};

export default [plugin, dashboardPlugin, workspacePlugin];
