// Extra webpack options merged by @jupyterlab/builder (package.json "jupyterlab.webpackConfig").
//
// Why: webpack's default "deterministic" module ids hash each module's identifier, and the
// container entry's identifier holds the absolute paths of the exposed modules, so the bundle's
// remoteEntry hash changed with the folder the repository was cloned into and CI's check that the
// committed bundle is the build of the sources failed on every fresh clone. "named" ids are the
// modules' paths relative to the package (the container entry's is "webpack/container/entry/..."):
// the same bytes from any checkout.
module.exports = {
  optimization: {
    moduleIds: 'named',
    chunkIds: 'named'
  }
};
