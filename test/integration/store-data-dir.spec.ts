/** Shops on the embedded store's files: one process per data directory, brokers restarted on one directory in a process. */
import { spawn, type ChildProcess } from "node:child_process";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import type { Context, ServiceSchema } from "moleculer";
import { DbMixin } from "../../mixins/db.mixin";
import { startShop, type Shop } from "../helpers/shop";
import { withEnv } from "../helpers/env";

/** A small service on the db mixin: one collection loaded at start, one in the background. */
const ledger: ServiceSchema = {
	name: "ledger",
	mixins: [DbMixin("ledger", { entries: { fields: { note: String } }, entry_history: { fields: { note: String }, loadInBackground: true } })],
	actions: {
		add: {
			params: { note: "string" },
			async handler(this: any, ctx: Context<{ note: string }>) {
				await this.db.entry_history.insert({ note: ctx.params.note });
				return this.db.entries.insert({ note: ctx.params.note });
			},
		},
		notes: {
			async handler(this: any) {
				return (await this.db.entries.find({}, { sort: { note: 1 } })).map((e: any) => e.note);
			},
		},
	},
};

/** A shop whose ledger keeps its files in `dir` (services read their data directory when created). */
const shopOn = (dir: string) => withEnv({ NODE_ENV: "development", DATA_DIR: dir, MONGO_URI: undefined }, () => startShop({ services: [ledger], noGateway: true }));

describe("the embedded store's data directory", () => {
	const dirs: string[] = [];
	const shops: Shop[] = [];
	const newDir = () => {
		const d = fs.mkdtempSync(path.join(os.tmpdir(), "store-data-dir-"));
		dirs.push(d);
		return d;
	};
	afterEach(async () => {
		await Promise.all(shops.splice(0).map((s) => s.stop()));
		for (const d of dirs.splice(0)) fs.rmSync(d, { recursive: true, force: true });
	});

	test("a broker stopped and started again on the same directory in one process finds its data; two shops run side by side on their own", async () => {
		const dir = newDir();
		const first = await shopOn(dir);
		await first.broker.call("ledger.add", { note: "one" });
		await first.stop();
		expect(fs.existsSync(path.join(dir, "shop.lock"))).toBe(false);

		const again = await shopOn(dir);
		shops.push(again);
		const other = await shopOn(newDir());
		shops.push(other);
		await again.broker.call("ledger.add", { note: "two" });
		await other.broker.call("ledger.add", { note: "elsewhere" });
		expect(await again.broker.call("ledger.notes")).toEqual(["one", "two"]);
		expect(await other.broker.call("ledger.notes")).toEqual(["elsewhere"]);
	});

	describe("used by another process", () => {
		let holder: ChildProcess;
		afterEach(() => holder?.kill("SIGKILL"));

		test("a shop does not start on it, and says which process has it", async () => {
			const dir = newDir();
			const script = `const { Collection } = require(${JSON.stringify(path.resolve("mixins/collection.ts"))});
				new Collection("entries", { fields: {} }, { dataDir: process.argv[1] }).connect().then(() => console.log("ready " + process.pid));
				setInterval(() => undefined, 1000);`;
			holder = spawn(process.execPath, ["--import", "tsx", "-e", script, dir], { stdio: ["ignore", "pipe", "inherit"] });
			const pid = await new Promise<number>((resolve) =>
				holder.stdout!.on("data", (out: Buffer) => {
					const ready = /ready (\d+)/.exec(out.toString());
					if (ready) resolve(Number(ready[1]));
				}),
			);

			await expect(shopOn(dir)).rejects.toThrow(`The data directory ${dir} is in use by another shop process (pid ${pid}`);
			expect(JSON.parse(fs.readFileSync(path.join(dir, "shop.lock"), "utf8")).pid).toBe(pid);
		}, 20_000);
	});
});
