resource "linode_nodebalancer" "web" {
  label                = "tf-web"
  region               = var.region
  client_conn_throttle = 0
  tags                 = var.nb_tags
}

# Layer 7: http with active http checks, passive checks and cookie stickiness.
resource "linode_nodebalancer_config" "http" {
  nodebalancer_id = linode_nodebalancer.web.id
  port            = 8081
  protocol        = "http"
  algorithm       = "roundrobin"
  stickiness      = "http_cookie"
  check           = "http"
  check_path      = "/healthz"
  check_interval  = var.http_check_interval
  check_timeout   = 3
  check_attempts  = 2
  check_passive   = true
}

# Layer 4: tcp with a PROXY protocol v2 header to the backend.
resource "linode_nodebalancer_config" "tcp" {
  nodebalancer_id = linode_nodebalancer.web.id
  port            = 8082
  protocol        = "tcp"
  proxy_protocol  = "v2"
  algorithm       = "leastconn"
  stickiness      = "table"
  check           = "connection"
  check_interval  = 5
  check_timeout   = 3
  check_attempts  = 2
}

# TLS termination: the API never returns the certificate or key (only the common name
# and fingerprint), so after an import the provider cannot know them; ignore_changes
# keeps an imported config from planning to re-send them.
resource "linode_nodebalancer_config" "https" {
  nodebalancer_id = linode_nodebalancer.web.id
  port            = 8443
  protocol        = "https"
  algorithm       = "source"
  stickiness      = "none"
  check           = "http_body"
  check_path      = "/healthz"
  check_body      = "backend=web"
  ssl_cert        = var.tls_cert
  ssl_key         = var.tls_key

  lifecycle {
    ignore_changes = [ssl_cert, ssl_key]
  }
}

resource "linode_nodebalancer_node" "web1" {
  nodebalancer_id = linode_nodebalancer.web.id
  config_id       = linode_nodebalancer_config.http.id
  label           = "web-1"
  address         = var.backend_web1
  weight          = 50
  mode            = "accept"
}

resource "linode_nodebalancer_node" "web2" {
  nodebalancer_id = linode_nodebalancer.web.id
  config_id       = linode_nodebalancer_config.http.id
  label           = "web-2"
  address         = var.backend_web2
  weight          = var.web2_weight
  mode            = var.web2_mode
}

resource "linode_nodebalancer_node" "tcp1" {
  nodebalancer_id = linode_nodebalancer.web.id
  config_id       = linode_nodebalancer_config.tcp.id
  label           = "tcp-1"
  address         = var.backend_tcp
}

resource "linode_nodebalancer_node" "tls1" {
  nodebalancer_id = linode_nodebalancer.web.id
  config_id       = linode_nodebalancer_config.https.id
  label           = "tls-1"
  address         = var.backend_web1
  weight          = 10
}
