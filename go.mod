module github.com/memdrain/memdrain

go 1.24.0

require (
	github.com/shirou/gopsutil/v4 v4.25.12 // indirect
	github.com/stretchr/testify v1.12.1 // indirect
	go.uber.org/goleak v1.3.0 // indirect
)
