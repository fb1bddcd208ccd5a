/** The throwaway-server harness lives in the product (the demo uses it); tests import it from here. */
export * from "../../src/service/local_postgres.js";
