/**
 * The workbench's JupyterLab / Notebook 7 plugin: `.onnx` files open in the offline Netron viewer.
 *
 * Registers the `onnx` file type (binary: the contents API hands it over base64, so JupyterLab
 * no longer tries to decode it as UTF-8 text) and the "Netron viewer" document widget as its
 * default, which also lists it under "Open With". The viewer output of the magics is rendered by
 * the mime extension in mime.ts.
 */
import { JupyterFrontEnd, JupyterFrontEndPlugin } from '@jupyterlab/application';
import { Base64ModelFactory } from '@jupyterlab/docregistry';

import { FACTORY_NAME, NetronViewerFactory } from './document';
import { onnxIcon } from './icon';

const FILE_TYPE = 'onnx';

const plugin: JupyterFrontEndPlugin<void> = {
  id: 'workbench-jupyterlab:onnx-files',
  description: 'Open .onnx files in the offline Netron viewer (shapes on every edge).',
  autoStart: true,
  activate: (app: JupyterFrontEnd) => {
    const registry = app.docRegistry;
    if (!registry.getModelFactory('base64')) {
      // JupyterLab registers it; a front end built on JupyterLab's components may not.
      registry.addModelFactory(new Base64ModelFactory());
    }
    registry.addFileType({
      name: FILE_TYPE,
      displayName: 'ONNX model',
      extensions: ['.onnx'],
      mimeTypes: ['application/octet-stream'],
      contentType: 'file',
      fileFormat: 'base64',
      icon: onnxIcon
    });
    registry.addWidgetFactory(
      new NetronViewerFactory({
        name: FACTORY_NAME,
        label: FACTORY_NAME,
        fileTypes: [FILE_TYPE],
        defaultFor: [FILE_TYPE],
        modelName: 'base64',
        readOnly: true,
        canStartKernel: false
      })
    );
  }
};

export default plugin;
