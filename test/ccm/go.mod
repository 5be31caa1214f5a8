// The CCM driver's own module: nodebalancer's `go build/test/vet ./...` never enter
// this directory. run.sh copies it beside the extracted CCM and linodego/v2 trees
// (which the module proxy does not serve), so the replace paths are relative to
// that work directory, not to this one.
module nodebalancer.test/ccmrun

go 1.26.4

require (
	github.com/linode/linode-cloud-controller-manager v0.0.0
	github.com/linode/linodego/v2 v2.0.0
	k8s.io/api v0.35.4
	k8s.io/apimachinery v0.35.4
	k8s.io/client-go v0.35.4
	k8s.io/cloud-provider v0.35.4
)

replace (
	github.com/linode/linode-cloud-controller-manager => ../ccm-src
	github.com/linode/linodego/v2 => ../linodego-v2
	k8s.io/cluster-bootstrap => k8s.io/cluster-bootstrap v0.35.4
	k8s.io/cri-api => k8s.io/cri-api v0.35.4
	k8s.io/cri-client => k8s.io/cri-client v0.35.4
	k8s.io/csi-translation-lib => k8s.io/csi-translation-lib v0.35.4
	k8s.io/dynamic-resource-allocation => k8s.io/dynamic-resource-allocation v0.35.4
	k8s.io/externaljwt => k8s.io/externaljwt v0.35.4
	k8s.io/kube-aggregator => k8s.io/kube-aggregator v0.35.4
	k8s.io/kube-controller-manager => k8s.io/kube-controller-manager v0.35.4
	k8s.io/kube-proxy => k8s.io/kube-proxy v0.35.4
	k8s.io/kube-scheduler => k8s.io/kube-scheduler v0.35.4
	k8s.io/kubelet => k8s.io/kubelet v0.35.4
	k8s.io/metrics => k8s.io/metrics v0.35.4
	k8s.io/mount-utils => k8s.io/mount-utils v0.35.4
	k8s.io/pod-security-admission => k8s.io/pod-security-admission v0.35.4
	k8s.io/sample-apiserver => k8s.io/sample-apiserver v0.35.4
)
