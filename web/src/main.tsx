import { render } from "preact";
import "./style.css";
import { App } from "./app";

const saved = localStorage.getItem("taskflow.theme");
if (saved === "light" || saved === "dark") document.documentElement.dataset.theme = saved;
render(<App />, document.getElementById("app")!);
