/** Reads what the embedded shop stored (its NeDB files under a data dir) for the audit: no service code involved. */
import fs from "node:fs";
import path from "node:path";
import { Collection } from "../../mixins/collection";
import type { StoredData } from "./audit";

async function readCollection(dataDir: string, name: string): Promise<Record<string, any>[]> {
	if (!fs.existsSync(path.join(dataDir, `${name}.db`))) throw new Error(`no stored collection ${name} in ${dataDir}`);
	const c = new Collection(name, { fields: {} }, { dataDir });
	await c.connect();
	try {
		return await c.find({});
	} finally {
		await c.disconnect();
	}
}

/** The collections the audit reads, from a stopped shop's data dir. */
export async function readStoredData(dataDir: string): Promise<StoredData> {
	const read = (name: string) => readCollection(dataDir, name);
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
