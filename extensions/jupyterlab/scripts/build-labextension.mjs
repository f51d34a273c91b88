// Build the federated labextension into ./labextension (committed, shipped in the wheel).
//
// Why a script rather than `jupyter labextension build`: the Python command downloads JupyterLab's
// core metadata at build time (or reads the installed JupyterLab), so the bundle would depend on
// whatever is installed. Here the core metadata is the npm package @jupyterlab/core-meta, pinned
// in package-lock.json like every other input, and the build is reproducible from the lock alone.
//
//   node scripts/build-labextension.mjs           build (after `tsc`)
//   node scripts/build-labextension.mjs --check   build, then fail if the result differs from the
//                                                 bundle that was there before (CI: the committed
//                                                 bundle must be the build of the committed sources)
import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const output = path.join(root, 'labextension');
const check = process.argv.includes('--check');

// The inputs of the bundle; tests/jupyter/test_labextension.py recomputes this digest to catch
// sources edited without a rebuild.
const SOURCE_FILES = ['package.json', 'package-lock.json', 'tsconfig.json', 'install.json', 'webpack.config.js', 'scripts/build-labextension.mjs'];
const SOURCE_DIRS = ['src', 'style'];

function listFiles(directory) {
  return fs
    .readdirSync(directory, { withFileTypes: true })
    .flatMap(entry => {
      const full = path.join(directory, entry.name);
      return entry.isDirectory() ? listFiles(full) : [full];
    })
    .sort();
}

function sourceDigest() {
  const files = [
    ...SOURCE_FILES.map(name => path.join(root, name)),
    ...SOURCE_DIRS.flatMap(name => listFiles(path.join(root, name)))
  ];
  const hash = createHash('sha256');
  for (const file of files) {
    const relative = path.relative(root, file).split(path.sep).join('/');
    hash.update(`${relative}\0`);
    hash.update(fs.readFileSync(file));
    hash.update('\0');
  }
  return hash.digest('hex');
}

function snapshot(directory) {
  if (!fs.existsSync(directory)) {
    return new Map();
  }
  return new Map(listFiles(directory).map(file => [path.relative(directory, file), fs.readFileSync(file)]));
}

const before = check ? snapshot(output) : null;

// @jupyterlab/builder wants a directory holding the core package.json under that name.
const coreDir = fs.mkdtempSync(path.join(os.tmpdir(), 'workbench-core-meta-'));
try {
  fs.copyFileSync(
    path.join(root, 'node_modules', '@jupyterlab', 'core-meta', 'core.package.json'),
    path.join(coreDir, 'package.json')
  );
  const builder = path.join(root, 'node_modules', '@jupyterlab', 'builder', 'lib', 'build-labextension.js');
  execFileSync(process.execPath, [builder, '--core-path', coreDir, root], { stdio: 'inherit', cwd: root });
} finally {
  fs.rmSync(coreDir, { recursive: true, force: true });
}
fs.copyFileSync(path.join(root, 'install.json'), path.join(output, 'install.json'));
fs.writeFileSync(path.join(output, 'source-digest.txt'), `${sourceDigest()}\n`);

if (check) {
  const after = snapshot(output);
  const names = new Set([...before.keys(), ...after.keys()]);
  const changed = [...names].filter(name => !(before.get(name) && after.get(name) && before.get(name).equals(after.get(name))));
  if (changed.length > 0) {
    console.error(
      `The committed labextension bundle is not the build of these sources; differing files: ${changed.join(', ')}.\n` +
        'The fresh build is now in extensions/jupyterlab/labextension: review and commit it.'
    );
    process.exit(1);
  }
  console.log('labextension bundle: the committed files are exactly the build of the sources.');
}
