/**
 * Payment settings from the environment. Read when the payments service is created (not at import),
 * so a test can set the variables before it starts a broker.
 *   STRIPE_SECRET_KEY      use Stripe instead of the built-in test provider
 *   STRIPE_API_BASE        e.g. http://127.0.0.1:12345: send Stripe API calls there (a local fake)
 *   STRIPE_WEBHOOK_SECRET  serve and verify POST /api/payments/webhook
 */
import { httpUrl, serverUrlSetting } from "../../lib/config";

export interface StripeApiTarget {
	host: string;
	port: number;
	protocol: "http" | "https";
}

export interface PaymentsConfig {
	stripeSecretKey?: string;
	stripeApi?: StripeApiTarget;
	stripeWebhookSecret?: string;
}

export function parseApiBase(base: string): StripeApiTarget {
	const url = new URL(base);
	const protocol = url.protocol === "http:" ? "http" : "https";
	return { host: url.hostname, port: url.port ? Number(url.port) : protocol === "http" ? 80 : 443, protocol };
}

function apiBaseSetting(value: string | undefined): StripeApiTarget | undefined {
	const base = serverUrlSetting("STRIPE_API_BASE", value, httpUrl("http://127.0.0.1:12111"));
	return base === undefined ? undefined : parseApiBase(base);
}

export function readPaymentsConfig(env: NodeJS.ProcessEnv = process.env): PaymentsConfig {
	return {
		stripeSecretKey: env.STRIPE_SECRET_KEY || undefined,
		stripeApi: apiBaseSetting(env.STRIPE_API_BASE),
		stripeWebhookSecret: env.STRIPE_WEBHOOK_SECRET || undefined,
	};
}
