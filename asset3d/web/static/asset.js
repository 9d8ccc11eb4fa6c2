// The asset page's viewer: say when the GLB loaded (or failed), for people and for the browser test.
(function () {
  const viewer = document.getElementById("viewer");
  const state = document.getElementById("viewer-state");
  if (!viewer) return;
  viewer.addEventListener("load", function () {
    viewer.dataset.loaded = "true";
    if (state) state.textContent = "drag to turn the model, scroll to zoom";
  });
  viewer.addEventListener("error", function (event) {
    viewer.dataset.error = (event.detail && event.detail.type) || "error";
    if (state) state.textContent = "the model could not be shown: " + viewer.dataset.error;
  });
})();
