/**
 * `npm run repl`: the Moleculer REPL.
 * - TRANSPORTER set: joins the running cluster as a node without services, so `call`, `services`,
 *   `nodes` and the custom `shop` command act on the live services.
 * - Embedded default: starts the whole shop in this process (gateway included) with the REPL on it.
 */
import crypto from "node:crypto";
import path from "node:path";
import fs from "node:fs";
import { ServiceBroker } from "moleculer";
import type { buildBrokerConfig as BuildBrokerConfig } from "../moleculer.config";

async function main() {
	// A REPL joining a cluster hosts no service and signs nothing: it needs no shared JWT_SECRET
	// (which a cluster node must have), so a throwaway one lets `TRANSPORTER=... npm run repl` start.
	// Set before moleculer.config loads: the module reads the configuration as it loads.
	if (process.env.TRANSPORTER && !process.env.JWT_SECRET?.trim()) process.env.JWT_SECRET = crypto.randomBytes(32).toString("hex");
	const { buildBrokerConfig } = require("../moleculer.config") as { buildBrokerConfig: typeof BuildBrokerConfig };
	const config = buildBrokerConfig();
	const joining = !!config.transporter;
	const broker = new ServiceBroker({
		...config,
		nodeID: joining ? `repl-${process.pid}` : config.nodeID,
		// A REPL node must not bind the metrics port of the node it joins.
		metrics: joining ? { enabled: false } : config.metrics,
	});
	if (!joining) {
		const dir = path.join(__dirname, "../services");
		for (const file of fs.readdirSync(dir).filter((f) => /\.service\.(ts|js)$/.test(f))) {
			broker.loadService(path.join(dir, file));
		}
	}
	await broker.start();
	broker.repl();
}

main().catch((err) => {
	console.error(err);
	process.exit(1);
});
