! Integrate an exported surrogate SDE dX = b(X) dt + S(X) dW by Euler-Maruyama in Fortran,
! through the C API (ensemble-mean drift, Cholesky factor of the ensemble-mean diffusion).
!
!   euler_maruyama FILE [n_paths=1000] [n_steps=1000] [dt=0.01]
!
! Prints "mean <i> <value>" and "var <i> <value>" for each slow variable at the final time.
program euler_maruyama
  use, intrinsic :: iso_c_binding, only: c_double
  use multiscale_surrogate
  implicit none
  type(surrogate_t) :: s
  character(len=4096) :: path, arg
  integer :: n_paths, n_steps, m, ierr, k, p, i, nseed
  real(c_double) :: dt, mean, var
  real(c_double), allocatable :: x(:, :), b(:, :), q(:, :, :), xi(:, :)
  integer, allocatable :: seed(:)

  if (command_argument_count() < 1) then
    write (0, '(a)') "usage: euler_maruyama FILE [n_paths] [n_steps] [dt]"
    stop 2
  end if
  call get_command_argument(1, path)
  n_paths = 1000; n_steps = 1000; dt = 0.01_c_double
  if (command_argument_count() >= 2) then
    call get_command_argument(2, arg); read (arg, *) n_paths
  end if
  if (command_argument_count() >= 3) then
    call get_command_argument(3, arg); read (arg, *) n_steps
  end if
  if (command_argument_count() >= 4) then
    call get_command_argument(4, arg); read (arg, *) dt
  end if

  call surrogate_open(s, path, ierr)
  if (ierr /= 0) then
    write (0, '(2a)') "error: ", surrogate_last_error()
    stop 1
  end if
  m = surrogate_dim(s)
  allocate (x(m, n_paths), b(m, n_paths), q(m, m, n_paths), xi(m, n_paths))
  x = 0.0_c_double
  call random_seed(size=nseed)
  allocate (seed(nseed))
  seed = 12345
  call random_seed(put=seed)

  do k = 1, n_steps
    call surrogate_drift(s, x, -1, b, ierr)
    if (ierr == 0) call surrogate_noise(s, x, -1, q, ierr)
    if (ierr /= 0) then
      write (0, '(2a)') "error: ", surrogate_last_error()
      stop 1
    end if
    call normals(xi)
    do p = 1, n_paths
      x(:, p) = x(:, p) + b(:, p) * dt + sqrt(dt) * matmul(q(:, :, p), xi(:, p))
    end do
  end do

  do i = 1, m
    mean = sum(x(i, :)) / n_paths
    var = sum((x(i, :) - mean)**2) / (n_paths - 1)
    write (*, '(a, i0, a, es24.16e3)') "mean ", i - 1, " ", mean
    write (*, '(a, i0, a, es24.16e3)') "var ", i - 1, " ", var
  end do
  call surrogate_close(s)

contains

  !> Standard normal variates by Box-Muller over random_number.
  subroutine normals(z)
    real(c_double), intent(out) :: z(:, :)
    real(c_double) :: u(2)
    real(c_double), parameter :: two_pi = 6.283185307179586_c_double
    integer :: j, l
    do j = 1, size(z, 2)
      do l = 1, size(z, 1)
        call random_number(u)
        z(l, j) = sqrt(-2.0_c_double * log(1.0_c_double - u(1))) * cos(two_pi * u(2))
      end do
    end do
  end subroutine normals

end program euler_maruyama
