/** Reads what the embedded shop stored (its NeDB files under a data dir) for the audit: no service code involved. */
import fs from "node:fs";
import path from "node:path";
import { Collection } from "../../mixins/collection";
import type { StoredData } from "./audit";

async function readCollection(dataDirs: string[], name: string): Promise<Record<string, any>[]> {
	const dataDir = dataDirs.find((dir) => fs.existsSync(path.join(dir, `${name}.db`)));
	if (!dataDir) throw new Error(`no stored collection ${name} in ${dataDirs.join(", ")}`);
	const c = new Collection(name, { fields: {} }, { dataDir });
	await c.connect();
	try {
		return await c.find({});
	} finally {
		await c.disconnect();
	}
}

/** The collections the audit reads, from a stopped shop's data dir (or a stopped cluster's: each node's). */
export async function readStoredData(dataDir: string | string[]): Promise<StoredData> {
	const read = (name: string) => readCollection(([] as string[]).concat(dataDir), name);
	return {
		variants: await read("variants"),
		inventoryTransactions: await read("inventory_transactions"),
		orders: await read("orders"),
		ordersOutbox: await read("orders_outbox"),
		payments: await read("payments"),
		promotions: await read("promotions"),
		promotionUses: await read("promotion_slots"),
		notifications: await read("notifications"),
	};
}
