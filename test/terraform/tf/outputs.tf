# run.sh reads these to drive traffic and to build the import identifiers.

output "nodebalancer_id" {
  value = linode_nodebalancer.web.id
}

output "ipv4" {
  value = linode_nodebalancer.web.ipv4
}

output "http_config_id" {
  value = linode_nodebalancer_config.http.id
}

output "tcp_config_id" {
  value = linode_nodebalancer_config.tcp.id
}

output "https_config_id" {
  value = linode_nodebalancer_config.https.id
}

output "https_commonname" {
  value = linode_nodebalancer_config.https.ssl_commonname
}

output "node_ids" {
  value = {
    web1 = linode_nodebalancer_node.web1.id
    web2 = linode_nodebalancer_node.web2.id
    tcp1 = linode_nodebalancer_node.tcp1.id
    tls1 = linode_nodebalancer_node.tls1.id
  }
}

# What the data sources read: run.sh checks each of these.
output "data_nodebalancer_label" {
  value = data.linode_nodebalancer.web.label
}

output "data_nodebalancers_count" {
  value = length(data.linode_nodebalancers.by_label.nodebalancers)
}

output "data_config_stickiness" {
  value = data.linode_nodebalancer_config.http.stickiness
}

output "data_configs" {
  description = "port => proxy_protocol of every config the configs data source lists"
  value       = { for c in data.linode_nodebalancer_configs.web.nodebalancer_configs : tostring(c.port) => c.proxy_protocol }
}

output "data_node_web2" {
  value = "${data.linode_nodebalancer_node.web2.mode}/${data.linode_nodebalancer_node.web2.weight}"
}

output "data_nb_types_count" {
  value = length(data.linode_nb_types.all.types)
}

output "data_nb_vpcs_count" {
  # The provider gives null, not an empty list, when there are none.
  value = data.linode_nodebalancer_vpcs.web.vpc_configs == null ? 0 : length(data.linode_nodebalancer_vpcs.web.vpc_configs)
}

output "data_config_check_interval" {
  value = data.linode_nodebalancer_config.http.check_interval
}

output "data_nodebalancer_tags" {
  value = join(",", sort(data.linode_nodebalancer.web.tags))
}
