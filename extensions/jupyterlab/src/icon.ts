/** The icon of `.onnx` files and the viewer tab: a small layered graph. */
import { LabIcon } from '@jupyterlab/ui-components';

const svgstr = `<svg xmlns="http://www.w3.org/2000/svg" width="16" height="16" viewBox="0 0 16 16">
  <g class="jp-icon3" fill="#616161">
    <rect x="5" y="1" width="6" height="3" rx="1"/>
    <rect x="1" y="7" width="6" height="3" rx="1"/>
    <rect x="9" y="7" width="6" height="3" rx="1"/>
    <rect x="5" y="13" width="6" height="2.5" rx="1"/>
    <path d="M7.5 4h1v1.5H12V7h-1V6.5H5V7H4V5.5h3.5zM4 10h1v1.5h6V10h1v2.5H8.5V13h-1v-.5H4z"/>
  </g>
</svg>`;

export const onnxIcon = new LabIcon({ name: 'workbench-jupyterlab:onnx', svgstr });
