document.documentElement.dataset.app = "berth-example";
