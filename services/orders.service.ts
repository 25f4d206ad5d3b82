/** Checkout saga, order state machine, order history. */
import type { ServiceSchema } from "moleculer";
import { HealthMixin } from "../mixins/health.mixin";

const OrdersService: ServiceSchema = {
	name: "orders",
	mixins: [HealthMixin],
	settings: { rest: "/" },
	actions: {},
};

export default OrdersService;
