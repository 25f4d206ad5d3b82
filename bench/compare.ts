/**
 * `npm run bench:compare -- --base REF`: does this tree make the shop faster or slower than the
 * commit REF? On a shared machine one run of each says little (capacity drifts within seconds), so
 * the two builds are measured in turns, round after round, with the same bench (`bench/run.ts`,
 * single process only), and the medians compared. CPU milliseconds per request is the steadiest
 * figure; req/s and p99 are given too.
 * REF is checked out into a temporary git worktree (sharing this tree's node_modules) and built
 * there; this tree is built as it is, uncommitted changes included.
 * Options: --base REF (required), --rounds N (default 3), --only SCENARIOS (default checkout; as
 * bench/run.ts takes them), --duration S (default 8), --warmup S (default 3), --products N,
 * --json FILE (also write the comparison as JSON). BENCH_NODE_ARGS applies to both builds.
 */
import { execFileSync, spawnSync } from "node:child_process";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { ROOT, buildDist, ensureBuilt } from "./lib/processes";
import { baseRunsFirst, compareRounds, comparisonTable, singleProcessFigures, type Round } from "./lib/compare";

const args = process.argv.slice(2);
const value = (name: string): string | undefined => {
	const i = args.indexOf(`--${name}`);
	return i >= 0 ? args[i + 1] : undefined;
};
const log = (...a: unknown[]) => console.error("[compare]", ...a);

function usage(message: string): never {
	console.error(`${message}\nusage: npm run bench:compare -- --base REF [--rounds N] [--only checkout,...] [--duration S] [--warmup S] [--products N] [--json FILE]`);
	process.exit(2);
}

const BASE = value("base") ?? usage("--base REF is required (a commit, branch or tag to measure against)");
const ROUNDS = Number(value("rounds") ?? 3);
if (!Number.isInteger(ROUNDS) || ROUNDS < 1) usage("--rounds takes a whole number of at least 1");
const ONLY = value("only") ?? "checkout";
const passThrough = ["duration", "warmup", "products"].flatMap((name) => (value(name) === undefined ? [] : [`--${name}`, value(name)!]));
if (value("duration") === undefined) passThrough.push("--duration", "8");

const git = (...a: string[]) => execFileSync("git", a, { cwd: ROOT, encoding: "utf8" }).trim();

/** REF checked out and built beside this tree; removed again by `remove`. */
function baseBuild(ref: string): { dist: string; commit: string; remove: () => void } {
	const commit = git("rev-parse", "--verify", `${ref}^{commit}`);
	const dir = fs.mkdtempSync(path.join(os.tmpdir(), "bench-base-"));
	git("worktree", "add", "--detach", dir, commit);
	const remove = () => {
		try {
			git("worktree", "remove", "--force", dir);
		} catch {
			fs.rmSync(dir, { recursive: true, force: true });
			git("worktree", "prune");
		}
	};
	try {
		// Same dependencies as this tree: a comparison of code, not of installs.
		fs.symlinkSync(path.join(ROOT, "node_modules"), path.join(dir, "node_modules"), "dir");
		log(`building ${ref} (${commit.slice(0, 10)}) in ${dir}`);
		buildDist(dir, (m) => log(m));
	} catch (err) {
		remove();
		throw err;
	}
	return { dist: path.join(dir, "dist"), commit, remove };
}

/** One single-process bench run of the build in `dist` (this tree's when undefined): its figures per scenario. */
function benchOnce(dist: string | undefined, out: string) {
	const env = { ...process.env };
	if (dist) env.BENCH_DIST = dist;
	else delete env.BENCH_DIST;
	const res = spawnSync(process.execPath, [path.join(ROOT, "node_modules/tsx/dist/cli.mjs"), path.join(ROOT, "bench/run.ts"), "--no-cluster", "--no-build", "--only", ONLY, "--out", out, ...passThrough], {
		cwd: ROOT,
		env,
		stdio: ["ignore", "ignore", "inherit"],
	});
	if (res.status !== 0) throw new Error(`bench/run.ts exited with ${res.status ?? res.signal}`);
	return singleProcessFigures(JSON.parse(fs.readFileSync(out, "utf8")));
}

/** Ctrl-C stops the bench run under way (it gets the signal too); the worktree is still removed. */
let interrupted = false;
process.on("SIGINT", () => {
	interrupted = true;
});

function main() {
	ensureBuilt(false, (m) => log(m));
	const base = baseBuild(BASE);
	const outDir = fs.mkdtempSync(path.join(os.tmpdir(), "bench-compare-"));
	const rounds: Round[] = [];
	try {
		for (let i = 0; i < ROUNDS; i++) {
			const round: Partial<Round> = {};
			const order: Array<keyof Round> = baseRunsFirst(i) ? ["base", "change"] : ["change", "base"];
			for (const which of order) {
				if (interrupted) throw new Error("interrupted");
				log(`round ${i + 1}/${ROUNDS}: ${which === "base" ? BASE : "this tree"}`);
				round[which] = benchOnce(which === "base" ? base.dist : undefined, path.join(outDir, `${i}-${which}.json`));
			}
			rounds.push(round as Round);
			for (const [name, b] of Object.entries(round.base!)) {
				const c = round.change![name];
				if (c) log(`  ${name}: ${b.rps} → ${c.rps} req/s, p99 ${b.p99} → ${c.p99} ms, CPU ${b.cpuMsPerReq} → ${c.cpuMsPerReq} ms/req`);
			}
		}
	} finally {
		base.remove();
		fs.rmSync(outDir, { recursive: true, force: true });
	}
	const comparison = compareRounds(rounds);
	console.log(`Medians over ${ROUNDS} round(s), ${BASE} (${base.commit.slice(0, 10)}) against this tree; the builds took turns going first.\n`);
	console.log(comparisonTable(comparison, BASE));
	const json = value("json");
	if (json) fs.writeFileSync(json, JSON.stringify({ base: { ref: BASE, commit: base.commit }, rounds, comparison }, null, 2) + "\n");
}

main();
