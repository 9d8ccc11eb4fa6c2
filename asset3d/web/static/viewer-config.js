// model-viewer reads this before it loads: every decoder comes from this app (node_modules), never a CDN.
self.ModelViewerElement = Object.assign(self.ModelViewerElement || {}, {
  dracoDecoderLocation: "/vendor/draco/",
  ktx2TranscoderLocation: "/vendor/basis/",
});
