/** One process at a time owns a data directory; the collections of one process share it. */
import { spawn, spawnSync, type ChildProcess } from "node:child_process";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { Collection } from "../../mixins/collection";
import { lockTiming } from "../../mixins/nedb-datafile";
import { storeTestDir } from "../helpers/store-dir";
import { catchOpsLog } from "../helpers/ops-log";

const spec = { fields: { sku: String }, indexes: [{ fields: { sku: 1 as const }, unique: true }] };

describe("the data directory's lock", () => {
	const tmp = storeTestDir("store-lock");
	let lock: string;
	beforeEach(() => {
		lock = path.join(tmp.dir, "shop.lock");
	});

	async function connected(name: string, opts: { loadInBackground?: boolean } = {}) {
		const c = new Collection(name, { ...spec, ...opts }, { dataDir: tmp.dir });
		tmp.opened.push(c);
		await c.connect();
		return c;
	}
	const holder = () => JSON.parse(fs.readFileSync(lock, "utf8")).pid;

	test("is shared by the collections of one process and removed when the last one closes", async () => {
		const items = await connected("items");
		const history = await connected("history", { loadInBackground: true });
		expect(holder()).toBe(process.pid);
		await items.disconnect();
		expect(holder()).toBe(process.pid);
		await history.disconnect();
		expect(fs.existsSync(lock)).toBe(false);
		// Started again in the same process (a broker restarted by a test): taken again.
		await connected("items");
		expect(holder()).toBe(process.pid);
	});

	describe("held by another running process", () => {
		let other: ChildProcess;
		afterEach(() => other?.kill("SIGKILL"));

		/** A second process with a collection open on `tmp.dir`; resolves with its pid once it holds the lock. */
		function otherProcess(): Promise<number> {
			const script = `const { Collection } = require(${JSON.stringify(path.resolve("mixins/collection.ts"))});
				new Collection("items", { fields: {} }, { dataDir: process.argv[1] }).connect().then(() => console.log("ready " + process.pid));
				setInterval(() => undefined, 1000);`;
			other = spawn(process.execPath, ["--import", "tsx", "-e", script, tmp.dir], { stdio: ["ignore", "pipe", "inherit"] });
			return new Promise((resolve, reject) => {
				other.stdout!.on("data", (out: Buffer) => {
					const ready = /ready (\d+)/.exec(out.toString());
					if (ready) resolve(Number(ready[1]));
				});
				other.on("exit", (code) => reject(new Error(`the other process exited with ${code}`)));
			});
		}

		test("refuses the start, naming the directory and the pid; taken over once that process is gone", async () => {
			const pid = await otherProcess();
			expect(holder()).toBe(pid);
			const items = new Collection("items", spec, { dataDir: tmp.dir });
			await expect(items.connect()).rejects.toThrow(`The data directory ${tmp.dir} is in use by another shop process (pid ${pid} on ${os.hostname()}`);
			// A collection loading in the background refuses at once too, not later.
			await expect(new Collection("history", { ...spec, loadInBackground: true }, { dataDir: tmp.dir }).connect()).rejects.toThrow(`pid ${pid}`);
			// Nothing was created or changed by the refused start.
			expect(fs.readdirSync(tmp.dir).sort()).toEqual(["items.db", "shop.lock"]);

			other.kill("SIGKILL");
			await new Promise((resolve) => other.once("exit", resolve));
			const warn = catchOpsLog().warn;
			await connected("items");
			expect(holder()).toBe(process.pid);
			expect(warn).toHaveBeenCalledWith(`Took over ${lock} from pid ${pid}, which no longer runs.`);
		}, 20_000);

		test("a copy of its directory (a backup taken while it runs) starts: the copied lock is another directory's", async () => {
			const pid = await otherProcess();
			const copy = fs.mkdtempSync(path.join(os.tmpdir(), "store-lock-copy-"));
			try {
				fs.cpSync(tmp.dir, copy, { recursive: true });
				expect(JSON.parse(fs.readFileSync(path.join(copy, "shop.lock"), "utf8")).pid).toBe(pid);
				const warn = catchOpsLog().warn;
				const items = new Collection("items", spec, { dataDir: copy });
				tmp.opened.push(items);
				await items.connect();
				expect(JSON.parse(fs.readFileSync(path.join(copy, "shop.lock"), "utf8")).pid).toBe(process.pid);
				expect(warn).toHaveBeenCalledWith(expect.stringContaining("which locked the directory this one was copied from"));
				// The original stays its process's.
				expect(holder()).toBe(pid);
				await items.disconnect();
			} finally {
				fs.rmSync(copy, { recursive: true, force: true });
			}
		}, 20_000);
	});

	test("left by a process that no longer runs, or by an earlier run with this process's pid, is taken over", async () => {
		catchOpsLog();
		const gone = spawnSync(process.execPath, ["-e", ""]).pid;
		fs.writeFileSync(lock, JSON.stringify({ pid: gone, host: os.hostname() }));
		const items = await connected("items");
		expect(holder()).toBe(process.pid);
		await items.disconnect();

		// A container's process often has the same pid after a restart: the lock is a previous run's.
		fs.writeFileSync(lock, JSON.stringify({ pid: process.pid, host: os.hostname(), since: "2020-01-01T00:00:00.000Z" }));
		await connected("items");
		expect(JSON.parse(fs.readFileSync(lock, "utf8")).since).not.toBe("2020-01-01T00:00:00.000Z");
		// An unreadable lock (a damaged disk) is not a running process either.
		await Promise.all(tmp.opened.splice(0).map((c) => c.disconnect()));
		fs.writeFileSync(lock, "\0\0\0");
		await connected("items");
		expect(holder()).toBe(process.pid);
	});

	describe("held by a process on another host (a container, or a machine sharing the volume)", () => {
		const otherHost = "shop-node-7f9c";
		const since = "2020-01-01T00:00:00.000Z";
		const lockOf = (pid: number) => JSON.stringify({ pid, host: otherHost, since });
		/** The lock as its owner last refreshed it `ms` ago. */
		const refreshedAgo = (ms: number) => {
			const at = new Date(Date.now() - ms);
			fs.utimesSync(lock, at, at);
		};

		test("refuses the start while its owner refreshes it, even when it names this process's pid (pid 1 in both containers)", async () => {
			fs.writeFileSync(lock, lockOf(process.pid));
			refreshedAgo(50_000);
			const refused = new Collection("items", spec, { dataDir: tmp.dir }).connect();
			await expect(refused).rejects.toThrow(
				`The data directory ${tmp.dir} is in use by a shop process on another host (pid ${process.pid} on ${otherHost}, since ${since}; this host is ${os.hostname()}), which refreshed its lock 50 s ago: refusing to start`,
			);
			await expect(refused).rejects.toThrow(`If that process is gone, the lock is taken over once it is 60 s old (start again then), or delete ${lock}.`);
			expect(fs.readFileSync(lock, "utf8")).toBe(lockOf(process.pid));
		});

		test("takes it over once not refreshed for a minute (a pod rescheduled after its node died), naming both hosts", async () => {
			const warn = catchOpsLog().warn;
			fs.writeFileSync(lock, lockOf(1));
			refreshedAgo(61_000);
			await connected("items");
			expect(holder()).toBe(process.pid);
			expect(warn).toHaveBeenCalledWith(
				`Took over ${lock} from pid 1 on ${otherHost}, since ${since} (this host is ${os.hostname()}), whose lock was last refreshed 61 s ago, so that process is taken to be gone. If it still runs, stop one of the two now: two processes writing the same files corrupt them.`,
			);
		});

		test("a running shop refreshes its lock, and says once when it was taken from it", async () => {
			const every = lockTiming.refreshMs;
			lockTiming.refreshMs = 20;
			const error = catchOpsLog().error;
			try {
				await connected("items");
				refreshedAgo(120_000);
				await new Promise((resolve) => setTimeout(resolve, 100));
				expect(Date.now() - fs.statSync(lock).mtimeMs).toBeLessThan(1_000);
				expect(error).not.toHaveBeenCalled();

				fs.writeFileSync(lock, lockOf(1));
				refreshedAgo(120_000);
				await new Promise((resolve) => setTimeout(resolve, 100));
				expect(error).toHaveBeenCalledTimes(1);
				expect(error).toHaveBeenCalledWith(`The lock ${lock} of this process's data directory is no longer its own (it now names pid 1 on ${otherHost}): if another shop process writes to ${tmp.dir} as well, the files get corrupted. Stop one of them.`);
				// Not refreshed for its new owner, nor removed when this process lets go.
				expect(Date.now() - fs.statSync(lock).mtimeMs).toBeGreaterThan(100_000);
				await Promise.all(tmp.opened.splice(0).map((c) => c.disconnect()));
				expect(fs.readFileSync(lock, "utf8")).toBe(lockOf(1));
			} finally {
				lockTiming.refreshMs = every;
			}
		});
	});

	test("a directory that cannot be written refuses the start with a clear message", async () => {
		jest.spyOn(fs, "writeFileSync").mockImplementation(() => {
			throw Object.assign(new Error(`EROFS: read-only file system, open '${lock}.${process.pid}'`), { code: "EROFS" });
		});
		await expect(new Collection("items", spec, { dataDir: tmp.dir }).connect()).rejects.toThrow(
			`The data directory ${tmp.dir} is not writable (EROFS: read-only file system, open '${lock}.${process.pid}'): refusing to start`,
		);
	});

	test("a data file that cannot be written refuses the start, naming it", async () => {
		fs.mkdirSync(path.join(tmp.dir, "items.db"));
		await expect(new Collection("items", spec, { dataDir: tmp.dir }).connect()).rejects.toThrow(`Cannot open ${path.join(tmp.dir, "items.db")} for writing (EISDIR`);
		// The refused collection does not keep the directory.
		expect(fs.existsSync(lock)).toBe(false);
	});
});
