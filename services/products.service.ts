/** Catalog and inventory: categories, products, variants, stock. */
import type { ServiceSchema } from "moleculer";
import { HealthMixin } from "../mixins/health.mixin";

const ProductsService: ServiceSchema = {
	name: "products",
	mixins: [HealthMixin],
	settings: { rest: "/" },
	actions: {},
};

export default ProductsService;
