import fs from "node:fs";
import path from "node:path";

const ROOT = path.join(__dirname, "../..");
/** Where the shop's own files give settings values anyone can read. */
export const DEPLOYMENT_FILES = ["docker-compose.yml", "k8s/base/secret.yaml", "k8s/overlays/dev/secret.yaml", "README.md"];

/**
 * Every literal value of setting `name` in the deployment files: `NAME: value`, `NAME=value`, or
 * docker-compose's default in `${NAME:-default}`. Not `$(...)`, `${NAME:?...}`, `...` or YAML's null:
 * those publish no value.
 */
export function publishedValues(name: string, extra: string[] = []): string[] {
	const setting = new RegExp(`\\b${name}(?::[ \\t]*|=)(?:\\$\\{${name}:?-([^}]*)\\}|([^\\s$\`'"]+))`, "g");
	const found = DEPLOYMENT_FILES.flatMap((f) => [...fs.readFileSync(path.join(ROOT, f), "utf8").matchAll(setting)].map((m) => m[1] ?? m[2]));
	return [...new Set([...found.filter((v) => v && v !== "null" && v !== "..."), ...extra])];
}
