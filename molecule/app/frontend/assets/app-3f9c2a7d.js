document.getElementById("app").dataset.ready = "chajipoa-test-asset";
