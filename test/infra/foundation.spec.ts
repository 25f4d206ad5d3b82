/**
 * The platform on real servers: one broker across separate processes over nats-server, the Redis
 * cacher and rate-limit store on redis-server, and the Prometheus endpoint.
 */
import type { Context, ServiceSchema } from "moleculer";
import path from "node:path";
import { spawn, type ChildProcess } from "node:child_process";
import Redis from "ioredis";
import { startNode, joinCluster, eventually, freePort, redisUrl, type ShopNode } from "../helpers/cluster";
import { startShop } from "../helpers/shop";
import { HealthMixin } from "../../mixins/health.mixin";
import { buildBrokerConfig } from "../../moleculer.config";
import { FakeUsers } from "../helpers/fakes";

jest.setTimeout(90_000);

const SLOW = path.resolve(__dirname, "../fixtures/slow.service.js");

describe("three processes over NATS", () => {
	const ns = `infra-${Date.now()}`;
	let gateway: ShopNode, workerA: ShopNode, workerB: ShopNode;
	let tester: Awaited<ReturnType<typeof joinCluster>>;
	// A stateless service on both workers: a stateful one (cart, orders, ...) runs on one node per store.
	const work = () => tester.call<{ nodeID: string }, { ms: number }>("slow.wait", { ms: 0 });

	beforeAll(async () => {
		[gateway, workerA, workerB] = await Promise.all([
			startNode({ nodeID: "gw", services: ["api"], namespace: ns }),
			startNode({ nodeID: "worker-a", services: ["cart", SLOW], namespace: ns }),
			startNode({ nodeID: "worker-b", services: [SLOW], namespace: ns }),
		]);
		tester = await joinCluster(ns);
		await eventually(() => (tester.registry.getServiceList({ onlyAvailable: true }) as any[]).filter((s) => s.name === "slow").length === 2);
	});
	afterAll(async () => {
		await tester?.stop();
		await Promise.all([gateway, workerA, workerB].map((n) => n?.kill("SIGKILL")));
	});

	test("the gateway node sees the services of the other nodes", async () => {
		const res = await eventually(async () => {
			const r = await fetch(`http://127.0.0.1:${gateway.port}/api/health`);
			const body = await r.json();
			return r.status === 200 && body.services.includes("cart") ? body : false;
		});
		expect(res.nodeID).toBe("gw");
	});

	test("calls are balanced over both nodes hosting the service", async () => {
		const seen: Record<string, number> = {};
		for (let i = 0; i < 40; i++) {
			const res = await work();
			seen[res.nodeID] = (seen[res.nodeID] ?? 0) + 1;
		}
		expect(Object.keys(seen).sort()).toEqual(["worker-a", "worker-b"]);
		expect(Math.min(...Object.values(seen))).toBeGreaterThanOrEqual(10);
	});

	test("a node killed mid-run: every call is still answered, by the survivor", async () => {
		const answeredBy: string[] = [];
		const errors: unknown[] = [];
		let killed = false;
		const worker = async () => {
			for (let i = 0; i < 25; i++) {
				try {
					answeredBy.push((await work()).nodeID);
				} catch (err) {
					errors.push(err);
				}
				if (!killed && answeredBy.length >= 20) {
					killed = true;
					workerB.proc.kill("SIGKILL");
				}
			}
		};
		await Promise.all([worker(), worker(), worker(), worker()]);
		expect(errors).toEqual([]);
		expect(answeredBy).toHaveLength(100);
		expect(answeredBy.slice(-20).every((n) => n === "worker-a")).toBe(true);
	});

	test("a second node of a stateful service on its own embedded store stops at once; the first serves on", async () => {
		const second = await startNode({ nodeID: "worker-c", services: ["cart"], namespace: ns }).catch((err: Error) => err);
		// It may stop before it ever reports ready, or just after.
		let output = second instanceof Error ? second.message : "";
		if (!(second instanceof Error)) {
			const code = await Promise.race([second.exited, new Promise((r) => setTimeout(() => r("still running"), 10_000))]);
			if (code === "still running") await second.kill("SIGKILL");
			expect(code).toBe(1);
			output = second.output();
		}
		expect(output).toContain("Service 'cart' already runs on node 'worker-a'");
		expect(output).toContain("MONGO_URI");
		// Gone from the registry once its heartbeat is missed, if it announced itself at all.
		await eventually(() => (tester.registry.getServiceList({ onlyAvailable: true }) as any[]).filter((s) => s.name === "cart").every((s) => s.nodeID === "worker-a"));
		expect((await tester.call<{ nodeID: string }>("cart.health")).nodeID).toBe("worker-a");
	});
});

const Counter: ServiceSchema = {
	name: "probe",
	mixins: [HealthMixin],
	settings: { rest: "/" },
	actions: {
		square: {
			rest: "GET /probe/square",
			cache: { keys: ["n"] },
			params: { n: { type: "number", convert: true } },
			handler(this: any, ctx: Context<{ n: number }>) {
				this.calls = (this.calls ?? 0) + 1;
				return { square: ctx.params.n * ctx.params.n };
			},
		},
	},
};

describe("NATS going away", () => {
	/** A nats-server of this test's own, which it can stop and start again on the same port. */
	function natsServer(port: number): ChildProcess {
		return spawn("nats-server", ["-a", "127.0.0.1", "-p", String(port)], { stdio: "ignore" });
	}
	const ready = async (node: ShopNode) => {
		const res = await fetch(`http://127.0.0.1:${node.healthPort}/ready`);
		return { status: res.status, reasons: ((await res.json()) as { reasons: string[] }).reasons };
	};

	test("the node is not ready while it cannot reach NATS, says why, and is ready again once NATS is back", async () => {
		const port = await freePort();
		let nats = natsServer(port);
		let node: ShopNode | undefined;
		try {
			node = await startNode({ nodeID: "gw-alone", services: ["api"], namespace: `nats-away-${Date.now()}`, env: { TRANSPORTER: `nats://127.0.0.1:${port}` } });
			expect(await ready(node)).toEqual({ status: 200, reasons: [] });

			nats.kill("SIGKILL");
			await eventually(async () => (await ready(node!)).status === 503);
			expect((await ready(node)).reasons).toEqual(["transporter: disconnected"]);
			// Alive all the while: restarting the node would not bring NATS back.
			expect((await fetch(`http://127.0.0.1:${node.healthPort}/live`)).status).toBe(200);
			expect(node.output()).toContain("Lost the connection to the transporter");

			nats = natsServer(port);
			await eventually(async () => (await ready(node!)).status === 200, 20_000);
			expect((await ready(node)).reasons).toEqual([]);
		} finally {
			await node?.kill("SIGKILL");
			nats.kill("SIGKILL");
		}
	});
});

describe("Redis", () => {
	test("the Redis cacher serves the second call from redis-server", async () => {
		const ns = `cache-${Date.now()}`;
		const shop = await startShop({ services: [Counter, FakeUsers], noGateway: true, broker: { namespace: ns, cacher: { type: "Redis", options: { prefix: `${ns}-cache`, redis: redisUrl() as any } } } });
		const redis = new Redis(redisUrl());
		try {
			// The Redis cacher connects after the broker starts and bypasses itself until then.
			await eventually(() => (shop.broker.cacher as any).connected === true);
			expect(await shop.broker.call("probe.square", { n: 7 })).toEqual({ square: 49 });
			// The cacher writes after answering; wait for the entry to land in Redis.
			await eventually(async () => (await redis.keys(`${ns}-cache*`)).some((k) => k.includes("probe.square")));
			expect(await shop.broker.call("probe.square", { n: 7 })).toEqual({ square: 49 });
			expect((shop.broker.getLocalService("probe") as any).calls).toBe(1);
		} finally {
			redis.disconnect();
			await shop.stop();
		}
	});

	test("rate limits hold across two gateways sharing redis-server", async () => {
		const ns = `rl-${Date.now()}`;
		const opts = { services: [Counter, FakeUsers], broker: { namespace: ns }, apiSettings: { shopRateLimit: { windowMs: 60_000, general: 5, auth: 5 } } };
		const [a, b] = [await startShop(opts), await startShop(opts)];
		try {
			const statuses: number[] = [];
			for (let i = 0; i < 8; i++) statuses.push((await (i % 2 ? b : a).http.get("/api/probe/square?n=2")).status);
			expect(statuses.filter((s) => s === 200)).toHaveLength(5);
			expect(statuses.slice(5)).toEqual([429, 429, 429]);
		} finally {
			await a.stop();
			await b.stop();
		}
	});
});

describe("Prometheus reporter", () => {
	test("exposes moleculer_request_total for a called action", async () => {
		const port = await freePort();
		const shop = await startShop({
			services: [Counter, FakeUsers],
			noGateway: true,
			broker: { metrics: { enabled: true, reporter: [{ type: "Prometheus", options: { port, path: "/metrics" } }] } },
		});
		try {
			await shop.broker.call("probe.square", { n: 3 });
			const text = await (await fetch(`http://127.0.0.1:${port}/metrics`)).text();
			expect(text).toMatch(/moleculer_request_total\{[^}]*action="probe\.square"[^}]*\} 1/);
		} finally {
			await shop.stop();
		}
	});

	test("as shipped: on the loopback address, without the process's user, host name, addresses or command line", async () => {
		const port = await freePort();
		const shipped = buildBrokerConfig({ NODE_ENV: "test", METRICS_ENABLED: "true", METRICS_PORT: String(port) }).metrics as Record<string, unknown>;
		// Process metrics are off under tests by default; these are what the reporter must filter.
		const shop = await startShop({ services: [Counter, FakeUsers], noGateway: true, broker: { metrics: { ...shipped, collectProcessMetrics: true } } });
		try {
			const text = await eventually(async () => (await fetch(`http://127.0.0.1:${port}/metrics`)).text());
			expect((shop.broker.metrics as any).reporter[0].server.address().address).toBe("127.0.0.1");
			expect(text).toMatch(/process_memory_heap_size_total/);
			expect(text).not.toMatch(/os_user_|os_hostname|os_network_|process_arguments/);
		} finally {
			await shop.stop();
		}
	});
});
