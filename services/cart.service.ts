/** Carts (user and guest) and promotion codes. */
import type { ServiceSchema } from "moleculer";
import { HealthMixin } from "../mixins/health.mixin";

const CartService: ServiceSchema = {
	name: "cart",
	mixins: [HealthMixin],
	settings: { rest: "/" },
	actions: {},
};

export default CartService;
