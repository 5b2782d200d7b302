"""The ModelDeployment API models and the CRD generated from them."""
