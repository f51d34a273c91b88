/**
 * The document widget of `.onnx` files: Netron, offline, with a shape on every edge.
 *
 * The widget is an IFrame on the server extension's `file.html?path=...` page, whose Netron
 * fetches the file through Jupyter's authenticated `/files/` handler (so a model's external
 * data next to it loads too). It reloads when the file changes on disk (save, revert, a cell
 * that writes the model again). Without the server extension it says how to enable it.
 */
import {
  ABCWidgetFactory,
  DocumentRegistry,
  DocumentWidget,
  IDocumentWidget
} from '@jupyterlab/docregistry';
import { ServerConnection } from '@jupyterlab/services';
import { Widget } from '@lumino/widgets';

import { onnxIcon } from './icon';
import { fileViewerUrl, VIEWER_HEADER } from './urls';

export const FACTORY_NAME = 'Netron viewer';

/** The content of an `.onnx` document: a status line (while loading or on error) and the viewer. */
export class NetronPanel extends Widget {
  constructor(context: DocumentRegistry.Context) {
    super();
    this._context = context;
    this.addClass('jp-WorkbenchNetronPanel');
    this._status = document.createElement('div');
    this._status.className = 'jp-WorkbenchNetron-status';
    this._frame = document.createElement('iframe');
    this._frame.className = 'jp-WorkbenchNetron-frame';
    this._frame.title = 'ONNX graph viewer';
    this.node.append(this._status, this._frame);
    void context.ready.then(() => this.reload());
    context.fileChanged.connect(() => void this.reload(), this);
  }

  /** Point the viewer at the file again (after it changed on disk). */
  async reload(): Promise<void> {
    const path = this._context.localPath;
    const version = this._context.contentsModel?.last_modified ?? '';
    const url = fileViewerUrl(path, version);
    if (url === this._frame.src) {
      return;
    }
    this._status.textContent = `Opening ${path} in Netron…`;
    const settings = ServerConnection.makeSettings();
    let response: Response;
    try {
      response = await ServerConnection.makeRequest(url, { method: 'GET' }, settings);
    } catch (error) {
      this._fail(`Cannot reach the Jupyter server: ${String(error)}`);
      return;
    }
    if (!response.headers.has(VIEWER_HEADER)) {
      this._fail(
        'The workbench Jupyter server extension is not active, so the Netron viewer is not served. ' +
          'Enable it with `jupyter server extension enable workbench` and restart Jupyter.'
      );
      return;
    }
    if (!response.ok) {
      this._fail(`The viewer could not open ${path}: ${await response.text()}`);
      return;
    }
    this._status.textContent = '';
    this._status.hidden = true;
    this._frame.hidden = false;
    this._frame.src = url;
  }

  private _fail(message: string): void {
    this._status.hidden = false;
    this._status.textContent = message;
    this._status.classList.add('jp-mod-error');
    this._frame.hidden = true;
  }

  private _context: DocumentRegistry.Context;
  private _status: HTMLDivElement;
  private _frame: HTMLIFrameElement;
}

/** Makes a Netron viewer for each opened `.onnx` file. */
export class NetronViewerFactory extends ABCWidgetFactory<IDocumentWidget<NetronPanel>> {
  protected createNewWidget(context: DocumentRegistry.Context): IDocumentWidget<NetronPanel> {
    const content = new NetronPanel(context);
    const widget = new DocumentWidget({ content, context });
    widget.addClass('jp-WorkbenchNetronDocument');
    widget.title.icon = onnxIcon;
    return widget;
  }
}
