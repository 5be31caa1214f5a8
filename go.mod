module github.com/nodebalancer/nodebalancer

go 1.26.8
