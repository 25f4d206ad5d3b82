/**
 * A gateway that cannot listen stops its process with a message naming PORT, whatever the reason:
 * moleculer-web stopped only for a port in use (without naming PORT), and a HOST that is not this machine's left a node
 * running with no gateway (a process of its own here: a fatal error exits it).
 */
import { spawn } from "node:child_process";
import net from "node:net";
import path from "node:path";

function gatewayProcess(env: Record<string, string>) {
	const api = path.resolve("services/api.service.ts");
	const script = `const { ServiceBroker } = require("moleculer");
		const broker = new ServiceBroker({ nodeID: "listen-test", logger: { type: "Console", options: { level: "fatal", colors: false } }, metrics: { enabled: false } });
		broker.createService(require(${JSON.stringify(api)}).default);
		broker.start().catch(() => undefined);
		setTimeout(() => { console.log("still running"); process.exit(0); }, 8000);`;
	const child = spawn(process.execPath, ["--import", "tsx", "-e", script], { env: { ...process.env, NODE_ENV: "test", ...env }, stdio: ["ignore", "pipe", "pipe"] });
	let out = "";
	child.stdout.on("data", (d: Buffer) => (out += d.toString()));
	child.stderr.on("data", (d: Buffer) => (out += d.toString()));
	return new Promise<{ code: number | null; out: string }>((resolve) => child.on("exit", (code) => resolve({ code, out })));
}

describe("a gateway that cannot listen", () => {
	test("on a HOST that is not this machine's: the start stops, naming PORT and the host", async () => {
		const { code, out } = await gatewayProcess({ HOST: "10.255.255.1", PORT: "0" });
		expect(out).not.toContain("still running");
		expect(code).toBe(1);
		expect(out).toMatch(/PORT 0 on 10\.255\.255\.1 cannot be opened: .*EADDRNOTAVAIL/);
	}, 20_000);

	test("on a port in use: the start stops, naming PORT", async () => {
		const taken = net.createServer();
		await new Promise<void>((resolve) => taken.listen(0, "127.0.0.1", resolve));
		const port = (taken.address() as net.AddressInfo).port;
		try {
			const { code, out } = await gatewayProcess({ HOST: "127.0.0.1", PORT: String(port) });
			expect(out).not.toContain("still running");
			expect(code).toBe(1);
			expect(out).toContain(`PORT ${port} on 127.0.0.1 is already in use: set PORT to a free port`);
		} finally {
			taken.close();
		}
	}, 20_000);
});
