/**
 * A program that embeds the shop (its own ServiceBroker with the services and the gateway) ends by
 * itself once it has stopped the broker: no timer, socket or thread of the shop keeps its process
 * alive afterwards. Run as a process of its own, which is the only place "ends by itself" shows.
 */
import { spawn } from "node:child_process";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";

/** Milliseconds from the broker's stop to the process's exit, and what it printed. */
function embeddingProcess(dataDir: string) {
	const shop = path.resolve("test/helpers/shop.ts");
	const script = `const { startShop } = require(${JSON.stringify(shop)});
		(async () => {
			const shop = await startShop();
			// A keep-alive connection, as a browser leaves one: the gateway's stop has to close it.
			const res = await fetch(shop.url + "/api/products?pageSize=2");
			if (res.status !== 200) throw new Error("list " + res.status);
			await res.text();
			await shop.stop();
			console.log("stopped " + Date.now());
		})().catch((err) => { console.error(err); process.exit(2); });`;
	const child = spawn(process.execPath, ["--import", "tsx", "-e", script], { env: { ...process.env, NODE_ENV: "test", DATA_DIR: dataDir }, stdio: ["ignore", "pipe", "pipe"] });
	let out = "";
	child.stdout.on("data", (d: Buffer) => (out += d.toString()));
	child.stderr.on("data", (d: Buffer) => (out += d.toString()));
	return new Promise<{ code: number | null; out: string; afterStopMs: number | null }>((resolve) =>
		child.on("exit", (code) => {
			const stopped = /stopped (\d+)/.exec(out);
			resolve({ code, out, afterStopMs: stopped ? Date.now() - Number(stopped[1]) : null });
		}),
	);
}

test("a process embedding the whole shop ends by itself right after broker.stop()", async () => {
	const dir = fs.mkdtempSync(path.join(os.tmpdir(), "embedded-stop-"));
	try {
		const { code, out, afterStopMs } = await embeddingProcess(dir);
		expect({ code, stopped: afterStopMs !== null }).toEqual({ code: 0, stopped: true });
		// The gateway's drain may wait up to SHUTDOWN_TIMEOUT / 2 (5 s here) for open connections, and did
		// hold the process that long after they had closed. Its output comes with a failure.
		if (afterStopMs! >= 2000) console.log(out);
		expect(afterStopMs).toBeLessThan(2000);
	} finally {
		fs.rmSync(dir, { recursive: true, force: true });
	}
}, 60_000);
