/** Collection#compact: after an erasure, nothing overwritten or removed can be read back from the embedded file. */
import fs from "node:fs";
import path from "node:path";
import { Collection } from "../../mixins/collection";
import { storeTestDir } from "../helpers/store-dir";

describe("compacting an embedded collection on demand", () => {
	const tmp = storeTestDir("store-compact");

	test("overwritten and removed versions leave the file at once; what is live stays, and reloads", async () => {
		const users = new Collection("users", { fields: { email: String, name: String } }, { dataDir: tmp.dir });
		tmp.opened.push(users);
		await users.connect();
		const ada = await users.insert({ email: "ada@example.com", name: "Ada Lovelace" });
		await users.insert({ email: "grace@example.com", name: "Grace Hopper" });
		await users.updateOne({ id: ada.id }, { $set: { email: "deleted@deleted.invalid", name: null } });
		const file = path.join(tmp.dir, "users.db");
		// Appended, not yet rewritten: the old version is still in the file.
		expect(fs.readFileSync(file, "utf8")).toContain("Ada Lovelace");

		await users.compact();
		const text = fs.readFileSync(file, "utf8");
		expect(text).not.toMatch(/Ada Lovelace|ada@example\.com/);
		expect(text).toContain("Grace Hopper");

		await users.removeMany({ email: "grace@example.com" });
		await users.compact();
		expect(fs.readFileSync(file, "utf8")).not.toContain("Grace");

		await users.disconnect();
		tmp.opened.splice(0);
		const again = new Collection("users", { fields: { email: String, name: String } }, { dataDir: tmp.dir });
		tmp.opened.push(again);
		await again.connect();
		expect(await again.find({})).toEqual([expect.objectContaining({ id: ada.id, email: "deleted@deleted.invalid", name: null })]);
	});

	test("in memory (tests) there is nothing to rewrite", async () => {
		const inMemory = new Collection("users", { fields: { email: String } }, {});
		tmp.opened.push(inMemory);
		await inMemory.connect();
		await inMemory.insert({ email: "a@example.com" });
		await expect(inMemory.compact()).resolves.toBeUndefined();
		expect(await inMemory.count({})).toBe(1);
	});
});
