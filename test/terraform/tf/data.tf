# Every NodeBalancer data source of the provider, read back from what main.tf made.

data "linode_nodebalancer" "web" {
  id = linode_nodebalancer.web.id
}

data "linode_nodebalancers" "by_label" {
  filter {
    name   = "label"
    values = [linode_nodebalancer.web.label]
  }
}

data "linode_nodebalancer_config" "http" {
  id              = linode_nodebalancer_config.http.id
  nodebalancer_id = linode_nodebalancer.web.id
}

data "linode_nodebalancer_configs" "web" {
  nodebalancer_id = linode_nodebalancer.web.id

  # It names no config, so only this makes it wait for them.
  depends_on = [linode_nodebalancer_config.http, linode_nodebalancer_config.tcp, linode_nodebalancer_config.https]
}

data "linode_nodebalancer_node" "web2" {
  id              = linode_nodebalancer_node.web2.id
  nodebalancer_id = linode_nodebalancer.web.id
  config_id       = linode_nodebalancer_config.http.id
}

data "linode_nb_types" "all" {}

# This server has no VPCs: the list is empty.
data "linode_nodebalancer_vpcs" "web" {
  nodebalancer_id = linode_nodebalancer.web.id
}
