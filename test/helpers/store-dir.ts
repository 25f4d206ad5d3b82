/** A fresh data directory for each test of the describe it is called in, removed afterwards with the collections opened on it. */
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import type { Collection } from "../../mixins/collection";

export function storeTestDir(prefix: string): { dir: string; opened: Collection[] } {
	const state = { dir: "", opened: [] as Collection[] };
	beforeEach(() => {
		state.dir = fs.mkdtempSync(path.join(os.tmpdir(), `${prefix}-`));
	});
	afterEach(async () => {
		jest.restoreAllMocks();
		await Promise.all(state.opened.splice(0).map((c) => c.disconnect()));
		fs.rmSync(state.dir, { recursive: true, force: true });
	});
	return state;
}
