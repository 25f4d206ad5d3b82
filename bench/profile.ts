/**
 * `npm run bench:profile -- FILE|DIR`: where the shop's main thread spent a scenario's time, from
 * the V8 CPU profile `npm run bench -- --profile DIR` writes (a DIR means its newest profile).
 * Prints Markdown tables: self time by package or shop file, by function, and time with callees.
 * Options: --from S --to S (the window, in seconds from the profile's start; by default the longest
 * busy stretch, which in a `--only checkout` run is the checkout scenario), --top N (default 30).
 */
import fs from "node:fs";
import path from "node:path";
import { busyWindow, summarize, summaryTables, type CpuProfile } from "./lib/profile";

const args = process.argv.slice(2);
const option = (name: string) => {
	const i = args.indexOf(`--${name}`);
	return i >= 0 ? Number(args[i + 1]) : undefined;
};
const target = args.find((a, i) => !a.startsWith("--") && !args[i - 1]?.startsWith("--"));
if (!target) {
	console.error("usage: npm run bench:profile -- FILE.cpuprofile|DIR [--from S --to S] [--top N]");
	process.exit(2);
}
let file = path.resolve(target);
if (fs.statSync(file).isDirectory()) {
	const profiles = fs
		.readdirSync(file)
		.filter((f) => f.endsWith(".cpuprofile"))
		.map((f) => path.join(file, f))
		.sort((a, b) => fs.statSync(b).mtimeMs - fs.statSync(a).mtimeMs);
	if (!profiles.length) {
		console.error(`no .cpuprofile in ${file}`);
		process.exit(2);
	}
	file = profiles[0];
}
const profile = JSON.parse(fs.readFileSync(file, "utf8")) as CpuProfile;
const from = option("from");
const to = option("to");
const window = from !== undefined && to !== undefined ? { from, to } : busyWindow(profile);
if (!window) {
	console.error("the thread was never busy for a whole second: give --from and --to");
	process.exit(1);
}
console.log(`${path.basename(file)}\n`);
console.log(summaryTables(summarize(profile, window, option("top") ?? 30)));
