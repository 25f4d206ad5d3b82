/**
 * The one broker factory of the integration tests: a real ServiceBroker with the real services and
 * the gateway on a free port, driven over HTTP.
 */
import type { AddressInfo } from "node:net";
import { ServiceBroker, type BrokerOptions, type ServiceSchema } from "moleculer";
import { buildBrokerConfig } from "../../moleculer.config";
import ApiService from "../../services/api.service";
import { HttpClient } from "./http";

export const SHOP_SERVICE_NAMES = ["users", "products", "cart", "orders", "payments", "notifications", "search", "analytics", "reviews"] as const;
export type ShopServiceName = (typeof SHOP_SERVICE_NAMES)[number];

export function loadService(name: ShopServiceName): ServiceSchema {
	return require(`../../services/${name}.service`).default;
}

export interface StartOptions {
	/** Shop services by name (default: all nine), or schemas (fakes, or services with mixins). */
	services?: Array<ShopServiceName | ServiceSchema>;
	/** Settings merged into the gateway (e.g. shopRateLimit). */
	apiSettings?: Record<string, unknown>;
	broker?: Partial<BrokerOptions>;
	/** Start without the gateway. */
	noGateway?: boolean;
}

export interface Shop {
	broker: ServiceBroker;
	url: string;
	http: HttpClient;
	stop(): Promise<void>;
}

export async function startShop(opts: StartOptions = {}): Promise<Shop> {
	const base = buildBrokerConfig({ ...process.env, NODE_ENV: "test" });
	const broker = new ServiceBroker({
		...base,
		nodeID: `test-${process.pid}-${Math.random().toString(36).slice(2, 8)}`,
		transporter: null,
		logger: process.env.TEST_LOGS ? base.logger : false,
		metrics: { enabled: false },
		tracing: { enabled: false },
		replOptions: undefined,
		...opts.broker,
	} as BrokerOptions);
	for (const s of opts.services ?? SHOP_SERVICE_NAMES) {
		broker.createService(typeof s === "string" ? loadService(s) : s);
	}
	let apiService: any;
	if (!opts.noGateway) {
		apiService = broker.createService({
			name: "api",
			mixins: [ApiService as unknown as Partial<ServiceSchema>],
			settings: {
				port: 0,
				ip: "127.0.0.1",
				shopRateLimit: { windowMs: 60_000, general: 1_000_000, auth: 1_000_000 },
				...opts.apiSettings,
			},
		});
	}
	await broker.start();
	const port = apiService ? (apiService.server.address() as AddressInfo).port : 0;
	const url = `http://127.0.0.1:${port}`;
	return { broker, url, http: new HttpClient(url), stop: () => broker.stop() };
}

/**
 * A shop whose start creates this admin (ADMIN_EMAIL / ADMIN_PASSWORD, set for the start only), and
 * the admin's access token.
 */
export async function startShopWithAdmin(admin: { email: string; password: string }, opts: StartOptions = {}): Promise<Shop & { adminToken: string }> {
	const before = { email: process.env.ADMIN_EMAIL, password: process.env.ADMIN_PASSWORD };
	process.env.ADMIN_EMAIL = admin.email;
	process.env.ADMIN_PASSWORD = admin.password;
	let shop: Shop;
	try {
		shop = await startShop(opts);
	} finally {
		for (const [name, value] of [["ADMIN_EMAIL", before.email], ["ADMIN_PASSWORD", before.password]] as const) {
			if (value === undefined) delete process.env[name];
			else process.env[name] = value;
		}
	}
	const res = await shop.http.post("/api/auth/login", admin);
	if (res.status !== 200) throw new Error(`admin login ${res.status}: ${res.text}`);
	return { ...shop, adminToken: res.body.accessToken };
}
