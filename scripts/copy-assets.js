// Copies the non-TypeScript files the code reads at run time (word lists, templates) next to the
// compiled output, so `dist/` runs on its own (as in the Docker image).
const fs = require("node:fs");
const path = require("node:path");

const root = path.resolve(__dirname, "..");
for (const dir of ["lib/data", "templates"]) {
	const from = path.join(root, dir);
	if (fs.existsSync(from)) fs.cpSync(from, path.join(root, "dist", dir), { recursive: true });
}
