/** bcrypt's worker threads live as long as the users service: a stopped node leaves none behind. */
import { startShop } from "../helpers/shop";
import { HttpClient } from "../helpers/http";
import { bcryptWorkersRunning } from "../../lib/password-policy";

test("registering and signing in use the workers; stopping the shop stops them", async () => {
	const shop = await startShop({ services: ["users"] });
	try {
		const http = new HttpClient(shop.url);
		const email = `workers-${Date.now()}@example.com`;
		expect((await http.post("/api/auth/register", { email, password: "kq7#vLpz-workers" })).status).toBe(201);
		expect((await http.post("/api/auth/login", { email, password: "kq7#vLpz-workers" })).status).toBe(200);
		expect((await http.post("/api/auth/login", { email, password: "wrong password here" })).status).toBe(401);
		expect(bcryptWorkersRunning()).toBeGreaterThan(0);
	} finally {
		await shop.stop();
	}
	expect(bcryptWorkersRunning()).toBe(0);
});
