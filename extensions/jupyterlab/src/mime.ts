/**
 * The mime renderer of the viewer output (`%%to_onnx`, `%onnx_view`, `wb.view`).
 *
 * A kernel that registered a model with a viewer transport sends
 * `application/vnd.workbench.onnx+json` next to its `text/html` fallback:
 *   { "version": 1, "url", "transport", "transport_note", "name", "title", "height" }
 * (the title is plain text: `Netron · mlp`, or the header line of `%%to_onnx`).
 * JupyterLab and Notebook 7 then show the viewer as a first-class output (an IFrame on the
 * offline Netron page with a line saying how it is served), instead of sanitizing an HTML string.
 * Front ends without this extension keep rendering the `text/html` of the same bundle.
 */
import { IRenderMime } from '@jupyterlab/rendermime-interfaces';
import { Widget } from '@lumino/widgets';

import { checkedOutputUrl } from './urls';

export const MIME_TYPE = 'application/vnd.workbench.onnx+json';
const MIN_HEIGHT = 100;
const MAX_HEIGHT = 5000;

/** What the kernel sends (workbench/jupyter/viewer.py, ViewerHandle.payload). */
interface IViewerPayload {
  version: number;
  url: string;
  transport: string;
  transport_note: string;
  name: string;
  title: string;
  height: number;
}

function payloadOf(data: unknown): IViewerPayload | null {
  if (typeof data !== 'object' || data === null) {
    return null;
  }
  const record = data as Record<string, unknown>;
  const strings = ['url', 'transport', 'transport_note', 'name', 'title'];
  if (record.version !== 1 || strings.some(key => typeof record[key] !== 'string')) {
    return null;
  }
  if (typeof record.height !== 'number') {
    return null;
  }
  return record as unknown as IViewerPayload;
}

/** Renders one viewer output. */
export class OnnxViewerOutput extends Widget implements IRenderMime.IRenderer {
  constructor(options: IRenderMime.IRendererOptions) {
    super();
    this._mimeType = options.mimeType;
    this.addClass('jp-WorkbenchOnnxOutput');
  }

  renderModel(model: IRenderMime.IMimeModel): Promise<void> {
    this.node.textContent = '';
    const payload = payloadOf(model.data[this._mimeType]);
    const url = payload === null ? null : checkedOutputUrl(payload.url);
    if (payload === null || url === null) {
      const problem = document.createElement('div');
      problem.className = 'jp-WorkbenchNetron-status jp-mod-error';
      problem.textContent =
        'This output is not a workbench viewer this front end can show (unknown format or address).';
      this.node.append(problem);
      return Promise.resolve();
    }
    const bar = document.createElement('div');
    bar.className = 'jp-WorkbenchOnnxOutput-bar';
    const title = document.createElement('span');
    title.className = 'jp-WorkbenchOnnxOutput-title';
    title.textContent = payload.title;
    const note = document.createElement('span');
    note.className = 'jp-WorkbenchOnnxOutput-transport';
    note.textContent = payload.transport_note;
    note.dataset.transport = payload.transport;
    const link = document.createElement('a');
    link.href = url.href;
    link.target = '_blank';
    link.rel = 'noopener';
    link.textContent = 'open in a new tab';
    bar.append(title, note, link);

    const frame = document.createElement('iframe');
    frame.className = 'jp-WorkbenchNetron-frame';
    frame.title = 'ONNX graph viewer';
    const height = Math.min(MAX_HEIGHT, Math.max(MIN_HEIGHT, Math.round(payload.height)));
    frame.style.height = `${height}px`;
    frame.src = url.href;
    this.node.append(bar, frame);
    return Promise.resolve();
  }

  private _mimeType: string;
}

export const rendererFactory: IRenderMime.IRendererFactory = {
  // The address is checked against the two forms a workbench viewer can take (see urls.ts),
  // so outputs of notebooks that are not trusted yet render too.
  safe: true,
  mimeTypes: [MIME_TYPE],
  createRenderer: options => new OnnxViewerOutput(options)
};

const extension: IRenderMime.IExtension = {
  id: 'workbench-jupyterlab:viewer-output',
  description: 'Renders the ONNX viewer output of %%to_onnx and %onnx_view.',
  rendererFactory,
  rank: 0, // ahead of the bundle's text/html fallback
  dataType: 'json'
};

export default extension;
