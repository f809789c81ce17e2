(function () {
  var errors = 0;
  window.addEventListener("error", function () { errors += 1; }, true);
  window.addEventListener("load", function () {
    var images = document.images, ok = 0;
    for (var i = 0; i < images.length; i += 1) {
      if (images[i].complete && images[i].naturalWidth > 0) { ok += 1; }
    }
    var root = document.documentElement;
    root.setAttribute("data-images-ok", ok + "/" + images.length);
    root.setAttribute("data-errors", String(errors));
    var warn = document.getElementById("missing-images");
    if (warn && ok !== images.length) {
      warn.hidden = false;
      warn.textContent = (images.length - ok) + " of " + images.length +
        " pictures could not be shown: keep the report folder and its _files folders together.";
    }
  });
}());
