/**
 * Without JWT_SECRET, the embedded store's signing secret is generated when the users service
 * starts, not at the first sign-in (where a full disk turned a registration already stored into a 500).
 */
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { startShop, type Shop } from "../helpers/shop";
import { setEnv } from "../helpers/env";

test("the users service's start stores the generated secret before anyone signs in", async () => {
	const dataDir = fs.mkdtempSync(path.join(os.tmpdir(), "jwt-at-start-"));
	const restore = setEnv({ NODE_ENV: "development", JWT_SECRET: undefined, DATA_DIR: dataDir, ADMIN_EMAIL: undefined, ADMIN_PASSWORD: undefined, SEED_DEMO: "false" });
	let shop: Shop | undefined;
	try {
		shop = await startShop({ services: ["users"], noGateway: true });
		expect(fs.readFileSync(path.join(dataDir, "jwt-secret"), "utf8").trim()).toMatch(/^[0-9a-f]{64}$/);
	} finally {
		await shop?.stop();
		restore();
		fs.rmSync(dataDir, { recursive: true, force: true });
	}
}, 30_000);
