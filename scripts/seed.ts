/**
 * Fills a large deterministic catalog for benchmarks: `npm run seed -- --products 10000`.
 * Writes straight into the products service's collections (NeDB files under DATA_DIR, or MONGO_URI)
 * with the same specs the service uses. Stop the shop first when it runs on NeDB files: the
 * embedded store belongs to one process at a time.
 *
 * Options: --products N (default 10000), --seed S, --batch B (default 1000),
 * --reset (empty the catalog collections first). Re-running adds only what is missing.
 */
import { parseArgs } from "node:util";
import { Collection } from "../mixins/collection";
import { readConfig } from "../lib/config";
import { productCollections, writeCatalog } from "../services/products.service";
import { demoCategories, demoProductRange, DEMO_SEED } from "../lib/demo-catalog";

function progressBar(done: number, total: number, startedAt: number, width = 30): string {
	const ratio = total ? done / total : 1;
	const filled = Math.round(ratio * width);
	const seconds = ((Date.now() - startedAt) / 1000).toFixed(1);
	return `[${"#".repeat(filled)}${"-".repeat(width - filled)}] ${String(Math.floor(ratio * 100)).padStart(3)}% ${done}/${total} products ${seconds}s`;
}

async function main() {
	const { values } = parseArgs({
		options: {
			products: { type: "string", default: "10000" },
			seed: { type: "string", default: String(DEMO_SEED) },
			batch: { type: "string", default: "1000" },
			reset: { type: "boolean", default: false },
		},
	});
	const total = Number(values.products);
	const seed = Number(values.seed);
	const batch = Number(values.batch);
	if (![total, seed, batch].every(Number.isInteger) || total < 0 || batch < 1) {
		console.error("Usage: npm run seed -- --products 10000 [--seed 20240601] [--batch 500] [--reset]");
		process.exit(2);
	}

	const cfg = readConfig();
	const opts = { mongoUri: cfg.mongoUri, dataDir: cfg.dataDir };
	const db = Object.fromEntries(Object.entries(productCollections).map(([name, spec]) => [name, new Collection(name, spec, opts)])) as any;
	await Promise.all(Object.values<Collection>(db).map((c) => c.connect()));
	console.error(`Seeding ${total} products into ${cfg.mongoUri ? "MongoDB" : cfg.dataDir}${values.reset ? " (reset first)" : ""}`);

	try {
		if (values.reset) await Promise.all(Object.values<Collection>(db).map((c) => c.removeMany({})));
		const { categories } = demoCategories(seed);
		const startedAt = Date.now();
		const interactive = process.stderr.isTTY;
		let written = 0;
		let lastDecile = -1;
		for (let from = 0; from < total; from += batch) {
			const to = Math.min(total, from + batch);
			const res = await writeCatalog(db, { categories, ...demoProductRange(from, to, { seed }) });
			written += res.products;
			// A redrawn bar on a terminal; a line per 10% in logs.
			const decile = Math.floor((to / total) * 10);
			if (interactive) process.stderr.write(`\r${progressBar(to, total, startedAt)}`);
			else if (decile !== lastDecile) console.error(progressBar(to, total, startedAt));
			lastDecile = decile;
		}
		if (interactive) process.stderr.write("\n");
		console.error(`Done: ${written} new products (${total - written} were already there) in ${((Date.now() - startedAt) / 1000).toFixed(1)}s.`);
	} finally {
		await Promise.all(Object.values<Collection>(db).map((c) => c.disconnect()));
	}
}

main().catch((err) => {
	console.error(err);
	process.exit(1);
});
