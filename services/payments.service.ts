/** Payments through a provider (built-in test provider or Stripe), refunds, webhooks. */
import type { ServiceSchema } from "moleculer";
import { HealthMixin } from "../mixins/health.mixin";

const PaymentsService: ServiceSchema = {
	name: "payments",
	mixins: [HealthMixin],
	settings: { rest: "/" },
	actions: {},
};

export default PaymentsService;
